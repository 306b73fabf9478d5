// Batched curve routines for entropic_fast: monotone cubic (PCHIP) integration and inversion,
// weighted isotonic regression. float64 numpy buffers in and out, GIL released, no torch.
//
// Every curve of a batch is sampled on one strictly ascending grid x[0..n-1]. Between nodes the
// integrand is the cubic Hermite interpolant with Fritsch-Carlson/Butland slopes (as scipy's
// PchipInterpolator), which never leaves the range of its two end values, so a non-negative
// integrand gives a non-decreasing cumulative integral. Integration is exact on each piece and
// inversion solves the same quartic, so the two agree to rounding.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "cephes.h"

namespace py = pybind11;
using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

namespace {

// ---------------------------------------------------------------- validation (GIL held)

std::string fmt(double v) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    return s.str();
}

void check_grid(const Array& x) {
    if (x.ndim() != 1) throw py::value_error("grid must be 1-D, got " + std::to_string(x.ndim()) + " dimensions");
    const ssize_t n = x.shape(0);
    if (n < 2) throw py::value_error("grid needs at least 2 points, got " + std::to_string(n));
    const double* p = x.data();
    for (ssize_t i = 0; i < n; ++i) {
        if (!std::isfinite(p[i]))
            throw py::value_error("grid point " + std::to_string(i) + " is not finite: " + fmt(p[i]));
        if (i > 0 && !(p[i] > p[i - 1]))
            throw py::value_error("grid is not strictly ascending at index " + std::to_string(i) + ": " +
                                  fmt(p[i - 1]) + " then " + fmt(p[i]));
    }
}

void check_batch(const Array& y, ssize_t n, const char* what, bool nonnegative) {
    if (y.ndim() != 2) throw py::value_error(std::string(what) + " must be 2-D (curves, points), got " +
                                             std::to_string(y.ndim()) + " dimensions");
    if (y.shape(1) != n)
        throw py::value_error(std::string(what) + " has " + std::to_string(y.shape(1)) +
                              " points per curve but the grid has " + std::to_string(n));
    const double* p = y.data();
    const ssize_t total = y.shape(0) * n;
    for (ssize_t k = 0; k < total; ++k) {
        if (!std::isfinite(p[k]) || (nonnegative && p[k] < 0.0))
            throw py::value_error(std::string(what) + " (curve " + std::to_string(k / n) + ", point " +
                                  std::to_string(k % n) + ") is " + fmt(p[k]) + ": values must be finite" +
                                  (nonnegative ? " and >= 0" : ""));
    }
}

void check_rows(const Array& q, ssize_t m, const char* what) {
    if (q.ndim() != 2 || q.shape(0) != m)
        throw py::value_error(std::string(what) + " must be 2-D with one row per curve (" + std::to_string(m) +
                              " rows)");
    const double* p = q.data();
    for (ssize_t k = 0; k < q.size(); ++k)
        if (!std::isfinite(p[k]))
            throw py::value_error(std::string(what) + " (row " + std::to_string(k / q.shape(1)) + ", column " +
                                  std::to_string(k % q.shape(1)) + ") is not finite: " + fmt(p[k]));
}

// ---------------------------------------------------------------- the interpolant (GIL free)

// PCHIP slopes at the nodes of one curve (Fritsch & Carlson 1980; Fritsch & Butland 1984).
void pchip_slopes(const double* x, const double* y, ssize_t n, double* d) {
    if (n == 2) {
        d[0] = d[1] = (y[1] - y[0]) / (x[1] - x[0]);
        return;
    }
    auto h = [&](ssize_t i) { return x[i + 1] - x[i]; };
    auto m = [&](ssize_t i) { return (y[i + 1] - y[i]) / h(i); };
    for (ssize_t k = 1; k < n - 1; ++k) {
        const double m0 = m(k - 1), m1 = m(k);
        if (m0 == 0.0 || m1 == 0.0 || (m0 > 0) != (m1 > 0)) {
            d[k] = 0.0;
        } else {
            const double w1 = 2 * h(k) + h(k - 1), w2 = h(k) + 2 * h(k - 1);
            d[k] = (w1 + w2) / (w1 / m0 + w2 / m1);
        }
    }
    // one-sided three-point end slopes, kept shape preserving
    auto edge = [](double h0, double h1, double m0, double m1) {
        double d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
        if ((d > 0) != (m0 > 0) || m0 == 0.0) return 0.0;
        if ((m0 > 0) != (m1 > 0) && std::fabs(d) > 3 * std::fabs(m0)) return 3 * m0;
        return d;
    };
    d[0] = edge(h(0), h(1), m(0), m(1));
    d[n - 1] = edge(h(n - 2), h(n - 3), m(n - 2), m(n - 3));
}

// Integral of the Hermite piece on [x_i, x_i + t h] (t in [0, 1]).
inline double piece_integral(double h, double y0, double y1, double d0, double d1, double t) {
    const double t2 = t * t, t3 = t2 * t, t4 = t3 * t;
    return h * (y0 * (0.5 * t4 - t3 + t) + h * d0 * (0.25 * t4 - 2.0 / 3.0 * t3 + 0.5 * t2) +
                y1 * (t3 - 0.5 * t4) + h * d1 * (0.25 * t4 - t3 / 3.0));
}

// Value of the Hermite piece at x_i + t h.
inline double piece_value(double h, double y0, double y1, double d0, double d1, double t) {
    const double t2 = t * t, t3 = t2 * t;
    return y0 * (2 * t3 - 3 * t2 + 1) + h * d0 * (t3 - 2 * t2 + t) + y1 * (3 * t2 - 2 * t3) + h * d1 * (t3 - t2);
}

void cumulative_row(const double* x, const double* y, const double* d, ssize_t n, double* c) {
    c[0] = 0.0;
    for (ssize_t i = 0; i + 1 < n; ++i) {
        const double h = x[i + 1] - x[i];
        // each piece is clamped at 0: the interpolant is >= 0, so only rounding can make it negative
        c[i + 1] = c[i] + std::max(0.0, 0.5 * h * (y[i] + y[i + 1]) + h * h * (d[i] - d[i + 1]) / 12.0);
    }
}

// Index of the piece holding xq (last piece for the right end).
inline ssize_t locate(const double* x, ssize_t n, double xq) {
    ssize_t i = std::upper_bound(x, x + n, xq) - x - 1;
    return std::min<ssize_t>(std::max<ssize_t>(i, 0), n - 2);
}

// Solve C(x) = target on one curve: bisection-safeguarded Newton on the piece found by search.
double invert_one(const double* x, const double* y, const double* d, const double* c, ssize_t n, double target) {
    if (target <= c[0]) return x[0];
    if (target >= c[n - 1]) return x[n - 1];
    ssize_t i = std::upper_bound(c, c + n, target) - c - 1;  // c[i] <= target < c[i+1]
    i = std::min<ssize_t>(std::max<ssize_t>(i, 0), n - 2);
    const double h = x[i + 1] - x[i], r = target - c[i];
    double lo = 0.0, hi = 1.0, t = (c[i + 1] > c[i]) ? r / (c[i + 1] - c[i]) : 0.5;
    for (int it = 0; it < 100; ++it) {
        const double f = piece_integral(h, y[i], y[i + 1], d[i], d[i + 1], t) - r;
        if (f > 0) hi = t; else lo = t;
        if (f == 0.0 || hi - lo <= 4e-16) break;
        const double fp = h * piece_value(h, y[i], y[i + 1], d[i], d[i + 1], t);
        double tn = (fp > 0) ? t - f / fp : 0.5 * (lo + hi);
        if (!(tn > lo && tn < hi)) tn = 0.5 * (lo + hi);  // Newton left the bracket: bisect
        if (std::fabs(tn - t) <= 1e-16) { t = tn; break; }
        t = tn;
    }
    return x[i] + t * h;
}

// Weighted pool-adjacent-violators: the non-decreasing fit minimising sum w (y - f)^2.
void isotonic_row(const double* y, const double* w, ssize_t n, double* out) {
    std::vector<double> val, wt;
    std::vector<ssize_t> len;
    val.reserve(n); wt.reserve(n); len.reserve(n);
    for (ssize_t i = 0; i < n; ++i) {
        val.push_back(y[i]); wt.push_back(w[i]); len.push_back(1);
        while (val.size() > 1 && val[val.size() - 2] > val.back()) {
            const double w2 = wt.back(), v2 = val.back();
            const ssize_t l2 = len.back();
            val.pop_back(); wt.pop_back(); len.pop_back();
            const double wsum = wt.back() + w2;
            val.back() = (wt.back() * val.back() + w2 * v2) / wsum;
            wt.back() = wsum;
            len.back() += l2;
        }
    }
    ssize_t k = 0;
    for (size_t b = 0; b < val.size(); ++b)
        for (ssize_t j = 0; j < len[b]; ++j) out[k++] = val[b];
}

// Copy of one curve divided by its largest value, and that value (1 for an all-zero curve). Integration
// and inversion are homogeneous in the integrand, so working on the scaled copy keeps full precision for
// curves of subnormal or huge values (1e-320, 1e300) and cannot overflow.
double scaled_row(const double* y, ssize_t n, std::vector<double>& out) {
    double m = 0.0;
    for (ssize_t i = 0; i < n; ++i) m = std::max(m, y[i]);
    if (!(m > 0.0)) m = 1.0;
    out.resize(n);
    for (ssize_t i = 0; i < n; ++i) out[i] = y[i] / m;
    return m;
}

// ---------------------------------------------------------------- bindings

Array slopes(const Array& x, const Array& y) {
    check_grid(x);
    const ssize_t n = x.shape(0);
    check_batch(y, n, "integrand", false);
    const ssize_t m = y.shape(0);
    Array d({m, n});
    double* pd = d.mutable_data();
    const double *px = x.data(), *py = y.data();
    {
        py::gil_scoped_release release;
        for (ssize_t r = 0; r < m; ++r) pchip_slopes(px, py + r * n, n, pd + r * n);
    }
    return d;
}

Array cumulative(const Array& x, const Array& y) {
    check_grid(x);
    const ssize_t n = x.shape(0);
    check_batch(y, n, "integrand", true);
    const ssize_t m = y.shape(0);
    Array c({m, n});
    double* pc = c.mutable_data();
    const double *px = x.data(), *py = y.data();
    {
        py::gil_scoped_release release;
        std::vector<double> d(n), ys;
        for (ssize_t r = 0; r < m; ++r) {
            const double scale = scaled_row(py + r * n, n, ys);
            pchip_slopes(px, ys.data(), n, d.data());
            cumulative_row(px, ys.data(), d.data(), n, pc + r * n);
            for (ssize_t i = 0; i < n; ++i) pc[r * n + i] *= scale;
        }
    }
    return c;
}

Array integral_at(const Array& x, const Array& y, const Array& xq) {
    check_grid(x);
    const ssize_t n = x.shape(0);
    check_batch(y, n, "integrand", true);
    const ssize_t m = y.shape(0);
    check_rows(xq, m, "query points");
    const ssize_t q = xq.shape(1);
    const double *px = x.data(), *py = y.data(), *pq = xq.data();
    const double span = px[n - 1] - px[0];
    for (ssize_t k = 0; k < xq.size(); ++k)
        if (pq[k] < px[0] - 1e-12 * span || pq[k] > px[n - 1] + 1e-12 * span)
            throw py::value_error("query point " + fmt(pq[k]) + " is outside the grid [" + fmt(px[0]) + ", " +
                                  fmt(px[n - 1]) + "]: no extrapolation");
    Array out({m, q});
    double* po = out.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<double> d(n), c(n), ys;
        for (ssize_t r = 0; r < m; ++r) {
            const double scale = scaled_row(py + r * n, n, ys);
            const double* yr = ys.data();
            pchip_slopes(px, yr, n, d.data());
            cumulative_row(px, yr, d.data(), n, c.data());
            for (ssize_t j = 0; j < q; ++j) {
                const double v = std::min(std::max(pq[r * q + j], px[0]), px[n - 1]);
                const ssize_t i = locate(px, n, v);
                const double h = px[i + 1] - px[i], t = (v - px[i]) / h;
                const double part = std::max(0.0, piece_integral(h, yr[i], yr[i + 1], d[i], d[i + 1], t));
                po[r * q + j] = std::min(c[i] + part, c[i + 1]) * scale;
            }
        }
    }
    return out;
}

Array invert(const Array& x, const Array& y, const Array& targets) {
    check_grid(x);
    const ssize_t n = x.shape(0);
    check_batch(y, n, "integrand", true);
    const ssize_t m = y.shape(0);
    check_rows(targets, m, "targets");
    const ssize_t q = targets.shape(1);
    Array out({m, q});
    double* po = out.mutable_data();
    const double *px = x.data(), *py = y.data(), *pt = targets.data();
    std::string err;
    {
        py::gil_scoped_release release;
        std::vector<double> d(n), c(n), ys;
        for (ssize_t r = 0; r < m && err.empty(); ++r) {
            const double scale = scaled_row(py + r * n, n, ys);
            const double* yr = ys.data();
            pchip_slopes(px, yr, n, d.data());
            cumulative_row(px, yr, d.data(), n, c.data());
            // the ends are judged in the caller's units: top is bit for bit what cumulative() returns, so
            // targets 0 and top map exactly to the grid ends even where the scaling loses digits (subnormals)
            const double total = c[n - 1], top = total * scale;
            const double tol = 1e-12 * top + 4 * std::numeric_limits<double>::denorm_min();
            for (ssize_t j = 0; j < q; ++j) {
                const double target = pt[r * q + j];
                if (target < -tol || target > top + tol) {
                    err = "target " + fmt(target) + " of curve " + std::to_string(r) + " is outside its range [0, " +
                          fmt(top) + "]";
                    break;
                }
                const double t = target >= top ? total : std::min(std::max(target / scale, 0.0), total);
                po[r * q + j] = invert_one(px, yr, d.data(), c.data(), n, t);
            }
        }
    }
    if (!err.empty()) throw py::value_error(err);
    return out;
}

Array isotonic(const Array& y, const Array& w) {
    if (y.ndim() != 2) throw py::value_error("values must be 2-D (curves, points)");
    const ssize_t m = y.shape(0), n = y.shape(1);
    if (w.ndim() != 2 || w.shape(0) != m || w.shape(1) != n)
        throw py::value_error("weights must have the shape of the values");
    check_batch(y, n, "values", false);
    const double* pw = w.data();
    for (ssize_t k = 0; k < w.size(); ++k)
        if (!(std::isfinite(pw[k]) && pw[k] > 0))
            throw py::value_error("weight (curve " + std::to_string(k / n) + ", point " + std::to_string(k % n) +
                                  ") is " + fmt(pw[k]) + ": weights must be finite and > 0");
    Array out({m, n});
    double* po = out.mutable_data();
    const double* py = y.data();
    {
        py::gil_scoped_release release;
        for (ssize_t r = 0; r < m; ++r) isotonic_row(py + r * n, pw + r * n, n, po + r * n);
    }
    return out;
}

// Element-wise Cephes exp or log of any array: the same bits on every CPU (cephes.h).
Array elementwise(const Array& x, bool log) {
    Array out(std::vector<ssize_t>(x.shape(), x.shape() + x.ndim()));
    const double* px = x.data();
    double* po = out.mutable_data();
    for (ssize_t i = 0; i < x.size(); ++i) po[i] = log ? ef_cephes::det_log(px[i]) : ef_cephes::det_exp(px[i]);
    return out;
}

}  // namespace

PYBIND11_MODULE(_curves, m) {
    m.doc() = "Batched monotone-cubic integration and inversion, isotonic regression (float64).";
    m.def("slopes", &slopes, py::arg("x"), py::arg("y"), "PCHIP node slopes of each curve y (m, n) on grid x (n).");
    m.def("cumulative", &cumulative, py::arg("x"), py::arg("y"),
          "Cumulative integral from x[0] of the PCHIP interpolant of each non-negative curve y (m, n).");
    m.def("integral_at", &integral_at, py::arg("x"), py::arg("y"), py::arg("xq"),
          "Cumulative integral of each curve y (m, n) at its own query points xq (m, q).");
    m.def("invert", &invert, py::arg("x"), py::arg("y"), py::arg("targets"),
          "Points where each curve's cumulative integral reaches its targets (m, q).");
    m.def("isotonic", &isotonic, py::arg("y"), py::arg("w"),
          "Weighted non-decreasing least-squares fit of each curve y (m, n) with weights w (m, n).");
    m.def("exp", [](const Array& x) { return elementwise(x, false); }, py::arg("x"),
          "exp of every element, the same bits on every CPU (Cephes).");
    m.def("log", [](const Array& x) { return elementwise(x, true); }, py::arg("x"),
          "log of every element, the same bits on every CPU (Cephes).");
}
