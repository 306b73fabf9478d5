// The model-free path's row errors on the CPU: the ideal denoiser of a Gaussian mixture or point set (its
// posterior mean) at each noisy row, the row's squared error against its clean row, and the row's defensive
// importance weight, all in float64 with one fixed order of operations.
//
// A row's result depends on that row's inputs alone, bit for bit, on every x86 CPU. Nothing here goes through BLAS
// (MKL rounds a row of a matrix product differently by its position in the block, its alignment and the instruction
// set MKL picks: AVX2 on AMD, AVX-512 on Intel), no sum follows a vector width (each is four fixed chains, as in
// stats.cpp), exp and log are Cephes' double-precision algorithms (cephes.h) rather than libm's, whose variants are
// chosen per CPU, and the file is compiled with -ffp-contract=off (no fused multiply-adds). So
// the batch size, the thread count, the instruction set and the CPU's maker change nothing. GIL released.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "cephes.h"

namespace py = pybind11;
using ef_cephes::det_exp;
using ef_cephes::det_log;

namespace {

// ---- fixed-order sums

constexpr int CHAINS = 16;   // partial sums of a squared distance: element j goes to chain j % 16
constexpr int64_t ROWS = 8;  // rows per pass over the means, so that each mean is read once per block

// sum_j (a_j - b_j)^2 in CHAINS chains added pairwise at the end: a fixed order however the compiler vectorises it.
inline __attribute__((always_inline)) double sq_dist(const double* a, const double* b, int64_t n) {
    double s[CHAINS] = {0};
    int64_t j = 0;
    for (; j + CHAINS <= n; j += CHAINS)
        for (int c = 0; c < CHAINS; ++c) {
            const double e = a[j + c] - b[j + c];
            s[c] += e * e;
        }
    for (int c = 0; j + c < n; ++c) {
        const double e = a[j + c] - b[j + c];
        s[c] += e * e;
    }
    for (int w = CHAINS / 2; w > 0; w /= 2)
        for (int c = 0; c < w; ++c) s[c] += s[c + w];
    return s[0];
}

// ---- a block of rows

struct Job {
    const double *means, *var, *logw;  // the mixture: k components of dim values
    int64_t k, dim;
    const double *tau, *share;  // the defensive mixture of the noise draws: n_wide (tau, share) pairs
    int64_t n_wide;
    const double *x0, *x, *sigma;  // the rows
    double *err, *weight;
};

// p[r k + c] = log w_c - |x_r - mu_c|^2 / (2 t) - dim/2 log t, t = v_c + s_r^2, for the block's nr rows.
inline __attribute__((always_inline)) void logits(const Job& b, int64_t r0, int64_t nr, double* p) {
    double last_v[ROWS], log_t[ROWS];
    for (int64_t r = 0; r < nr; ++r) last_v[r] = std::nan("");
    const double half_dim = 0.5 * double(b.dim);
    for (int64_t c = 0; c < b.k; ++c) {
        const double* mu = b.means + c * b.dim;
        for (int64_t r = 0; r < nr; ++r) {
            const double s2 = b.sigma[r0 + r] * b.sigma[r0 + r], t = b.var[c] + s2;
            if (!(b.var[c] == last_v[r])) log_t[r] = det_log(t), last_v[r] = b.var[c];
            p[r * b.k + c] = b.logw[c] - sq_dist(b.x + (r0 + r) * b.dim, mu, b.dim) / (2.0 * t) - half_dim * log_t[r];
        }
    }
}

// The posterior means of the block's rows into out (nr x dim), from their logits p (overwritten by the weights).
inline __attribute__((always_inline)) void posterior(const Job& b, int64_t r0, int64_t nr, double* p, double* out) {
    double total[ROWS], shrink[ROWS];  // shrink: sum w v / t, the weight of x itself
    for (int64_t r = 0; r < nr; ++r) {
        double* pr = p + r * b.k;
        const double top = *std::max_element(pr, pr + b.k), s2 = b.sigma[r0 + r] * b.sigma[r0 + r];
        total[r] = shrink[r] = 0;
        for (int64_t c = 0; c < b.k; ++c) {
            pr[c] = det_exp(pr[c] - top);
            total[r] += pr[c];
            shrink[r] += pr[c] * b.var[c] / (b.var[c] + s2);
        }
    }
    std::fill(out, out + nr * b.dim, 0.0);
    for (int64_t c = 0; c < b.k; ++c) {
        const double* mu = b.means + c * b.dim;
        for (int64_t r = 0; r < nr; ++r) {
            const double w = p[r * b.k + c], s2 = b.sigma[r0 + r] * b.sigma[r0 + r];
            if (w == 0) continue;  // a far component adds exact zeros
            const double a = w * s2 / (b.var[c] + s2);
            double* o = out + r * b.dim;
            for (int64_t j = 0; j < b.dim; ++j) o[j] += a * mu[j];
        }
    }
    for (int64_t r = 0; r < nr; ++r) {
        const double* xr = b.x + (r0 + r) * b.dim;
        double* o = out + r * b.dim;
        for (int64_t j = 0; j < b.dim; ++j) o[j] = (o[j] + shrink[r] * xr[j]) / total[r];
    }
}

// p / q of row r's realised noise x - x0 (Hesterberg's defensive mixture, as reference.importance_weight).
inline __attribute__((always_inline)) double weight_of(const Job& b, int64_t r) {
    if (b.n_wide == 0) return 1.0;
    const double s = b.sigma[r], rho2 = sq_dist(b.x + r * b.dim, b.x0 + r * b.dim, b.dim) / (s * s);
    double q = 1.0;
    for (int64_t i = 0; i < b.n_wide; ++i) q -= b.share[i];
    for (int64_t i = 0; i < b.n_wide; ++i)
        q += b.share[i] * det_exp(0.5 * rho2 * (1.0 - 1.0 / (b.tau[i] * b.tau[i])) - double(b.dim) * det_log(b.tau[i]));
    return 1.0 / q;
}

inline __attribute__((always_inline)) void rows_body(const Job& b, int64_t lo, int64_t hi) {
    std::vector<double> p(ROWS * b.k), out(ROWS * b.dim);
    for (int64_t r0 = lo; r0 < hi; r0 += ROWS) {
        const int64_t nr = std::min(ROWS, hi - r0);
        logits(b, r0, nr, p.data());
        posterior(b, r0, nr, p.data(), out.data());
        for (int64_t r = 0; r < nr; ++r) {
            b.err[r0 + r] = sq_dist(out.data() + r * b.dim, b.x0 + (r0 + r) * b.dim, b.dim);
            b.weight[r0 + r] = weight_of(b, r0 + r);
        }
    }
}

// The same body compiled for three instruction sets: the same operations in the same order, so the same bits.
__attribute__((target("avx512f"))) void rows_avx512(const Job& b, int64_t lo, int64_t hi) { rows_body(b, lo, hi); }
__attribute__((target("avx2"))) void rows_avx2(const Job& b, int64_t lo, int64_t hi) { rows_body(b, lo, hi); }
void rows_plain(const Job& b, int64_t lo, int64_t hi) { rows_body(b, lo, hi); }

// The instruction set used on this CPU; EF_NOISE_SIMD=avx2 or scalar caps it (for tests), as for the noise.
int simd_level() {
    const char* cap = std::getenv("EF_NOISE_SIMD");
    const std::string want = cap ? cap : "";
    if (want == "scalar") return 0;
    if (want != "avx2" && __builtin_cpu_supports("avx512f")) return 2;
    return __builtin_cpu_supports("avx2") ? 1 : 0;
}

void rows(const Job& b, int64_t lo, int64_t hi) {
    static const int level = simd_level();
    if (level == 2) return rows_avx512(b, lo, hi);
    if (level == 1) return rows_avx2(b, lo, hi);
    rows_plain(b, lo, hi);
}

using Array = py::array_t<double, py::array::c_style | py::array::forcecast>;

void check(const Array& a, int ndim, int64_t n0, int64_t n1, const char* name) {
    if (a.ndim() != ndim || a.shape(0) != n0 || (ndim == 2 && a.shape(1) != n1))
        throw py::value_error(std::string(name) + " has the wrong shape");
}

py::tuple errors(Array means, Array var, Array logw, Array x0, Array x, Array sigma, Array tau, Array share,
                 int threads) {
    if (means.ndim() != 2 || x.ndim() != 2) throw py::value_error("means and x must be 2-D");
    const int64_t k = means.shape(0), dim = means.shape(1), n = x.shape(0);
    check(var, 1, k, 0, "var");
    check(logw, 1, k, 0, "logw");
    check(x, 2, n, dim, "x");
    check(x0, 2, n, dim, "x0");
    check(sigma, 1, n, 0, "sigma");
    check(share, 1, tau.shape(0), 0, "share");
    if (k < 1 || dim < 1) throw py::value_error("the mixture needs at least one component of at least one dimension");
    py::array_t<double> err(n), weight(n);
    const Job job{means.data(), var.data(), logw.data(), k, dim, tau.data(), share.data(), tau.shape(0),
                  x0.data(), x.data(), sigma.data(), err.mutable_data(), weight.mutable_data()};
    {
        py::gil_scoped_release release;
        const int64_t t = std::max<int64_t>(1, std::min<int64_t>(threads, (n + ROWS - 1) / ROWS));
        std::vector<std::thread> pool;  // whole blocks per thread: a row's bits do not depend on the split anyway
        for (int64_t i = 1; i < t; ++i) pool.emplace_back(rows, std::cref(job), n * i / t, n * (i + 1) / t);
        rows(job, 0, n / t);
        for (auto& th : pool) th.join();
    }
    return py::make_tuple(err, weight);
}

}  // namespace

PYBIND11_MODULE(_ideal, m) {
    m.doc() = "The ideal (mixture / point-set) denoiser's row errors in a fixed order of operations (csrc/ideal.cpp)";
    m.def("errors", &errors, py::arg("means"), py::arg("var"), py::arg("logw"), py::arg("x0"), py::arg("x"),
          py::arg("sigma"), py::arg("tau"), py::arg("share"), py::arg("threads") = 1,
          "Each row's squared error of the ideal denoiser and its importance weight (float64 (rows,) each).");
    m.def("simd", []() { int l = simd_level(); return std::string(l == 2 ? "avx512" : l == 1 ? "avx2" : "scalar"); },
          "The instruction set the row loop uses on this CPU (EF_NOISE_SIMD=avx2|scalar caps it).");
}
