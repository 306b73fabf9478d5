"""Render a pytest-benchmark JSON file as the markdown tables the README links: one table per group,
each contender's median beside the group's first (the ratio is what to read; absolute times are this
machine's), the machine named.

Usage: python benchmarks/render.py benchmarks/results/speed_cpu.json [OUT.md]
"""
import json
import sys


def render(data, source):
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {})
    machine = f"{cpu.get('brand_raw') or m.get('processor') or m.get('machine')}, {cpu.get('count', '?')} cores; " \
              f"python {m.get('python_version')}"
    lines = ["# Speed suites (pytest-benchmark)", "",
             "Command: `make bench` (`pytest benchmarks --benchmark-enable --benchmark-json=...`, then "
             "`python benchmarks/render.py`)  ", f"Machine: {machine}  ", f"Date: {data.get('datetime', '')[:10]}  ",
             f"Raw data: `{source}`", "",
             "Medians over calibrated rounds; `ratio` is against the first contender of the group, measured in the "
             "same run.", ""]
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"] or b["name"], []).append(b)
    for group, rows in groups.items():
        base = rows[0]["stats"]["median"]
        lines += [f"## {group}", "", "| contender | median ms | IQR ms | rounds | ratio |", "| --- | --- | --- | --- | --- |"]
        for b in rows:
            st = b["stats"]
            who = ", ".join(str(v) for v in (b.get("params") or {}).values()) or b["name"]
            lines.append(f"| {who} | {st['median'] * 1e3:.3f} | {st['iqr'] * 1e3:.3f} | {st['rounds']} | "
                         f"{st['median'] / base:.2f}x |")
        lines.append("")
        for b in rows:
            paired = (b.get("extra_info") or {}).get("paired_ratio")
            if paired:
                who = ", ".join(str(v) for v in (b.get("params") or {}).values())
                lines += [f"Paired ratio{', ' + who if who else ''} (the two contenders alternated, one ratio per "
                          f"round): median "
                          f"**{paired['median']:.3f}x**, quartiles {paired['q1']:.3f}x to {paired['q3']:.3f}x, "
                          f"{paired['rounds']} rounds.", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        text = render(json.load(f), argv[0])
    if len(argv) > 1:
        with open(argv[1] + ".tmp", "w") as f:
            f.write(text)
        import os
        os.replace(argv[1] + ".tmp", argv[1])
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
