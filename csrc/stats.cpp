// Per-row squared error accumulated per sigma, for the CPU path: the twin of the Triton row kernel
// (entropic_fast/kernels/stats.py) in one pass, instead of a dozen small torch operations per batch.
//
// Row r adds err = sum_j (d - x0)^2 (the difference in the inputs' precision, the squares summed in
// float64) to acc[0, i], err^2 to acc[1, i], 1 to acc[2, i] with i = sigma_index[r]; a row whose err is
// not finite adds nothing there and 1 to acc[3, i]. Rows are added in order, as torch's index_add_ does,
// so the result does not depend on how rows are batched. GIL released.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace py = pybind11;

namespace {

template <typename T>
void rows(const T* d, const T* x0, const int64_t* idx, int64_t n_rows, int64_t dim, double* acc, int64_t n_sigmas,
          int8_t* ok) {
    for (int64_t r = 0; r < n_rows; ++r) {
        const T* a = d + r * dim;
        const T* b = x0 + r * dim;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the loop vectorises and pipelines
        int64_t j = 0;
        for (; j + 4 <= dim; j += 4) {
            const double e0 = double(T(a[j] - b[j])), e1 = double(T(a[j + 1] - b[j + 1]));
            const double e2 = double(T(a[j + 2] - b[j + 2])), e3 = double(T(a[j + 3] - b[j + 3]));
            s0 += e0 * e0; s1 += e1 * e1; s2 += e2 * e2; s3 += e3 * e3;
        }
        for (; j < dim; ++j) {
            const double e = double(T(a[j] - b[j]));
            s0 += e * e;
        }
        const double err = (s0 + s1) + (s2 + s3);
        const int64_t i = idx[r];
        const bool good = std::isfinite(err);
        if (good) {
            acc[i] += err;
            acc[n_sigmas + i] += err * err;
            acc[2 * n_sigmas + i] += 1.0;
        } else {
            acc[3 * n_sigmas + i] += 1.0;
        }
        ok[r] = good;
    }
}

template <typename T>
py::array_t<int8_t> run(py::array_t<T, py::array::c_style> d, py::array_t<T, py::array::c_style> x0,
                        py::array_t<int64_t, py::array::c_style> idx, py::array_t<double, py::array::c_style> acc) {
    if (d.ndim() != 2 || x0.ndim() != 2 || d.shape(0) != x0.shape(0) || d.shape(1) != x0.shape(1))
        throw py::value_error("d and x0 must be (rows, dim) arrays of one shape");
    if (idx.ndim() != 1 || idx.shape(0) != d.shape(0)) throw py::value_error("sigma_index must have one entry per row");
    if (acc.ndim() != 2 || acc.shape(0) != 4) throw py::value_error("acc must be (4, sigmas)");
    const int64_t n_rows = d.shape(0), dim = d.shape(1), n_sigmas = acc.shape(1);
    const int64_t* ix = idx.data();
    for (int64_t r = 0; r < n_rows; ++r)
        if (ix[r] < 0 || ix[r] >= n_sigmas)
            throw py::value_error("sigma_index " + std::to_string(ix[r]) + " out of range [0, " +
                                  std::to_string(n_sigmas) + ")");
    py::array_t<int8_t> ok(n_rows);
    {
        py::gil_scoped_release release;
        rows(d.data(), x0.data(), ix, n_rows, dim, acc.mutable_data(), n_sigmas, ok.mutable_data());
    }
    return ok;
}

}  // namespace

PYBIND11_MODULE(_stats, m) {
    m.doc() = "Per-row squared error accumulated per sigma, for the CPU path (see csrc/stats.cpp)";
    m.def("accumulate", &run<float>, py::arg("d"), py::arg("x0"), py::arg("sigma_index"), py::arg("acc"),
          "Add each row's squared error to acc (4, sigmas) in place; returns the rows' finite flags (int8).");
    m.def("accumulate", &run<double>, py::arg("d"), py::arg("x0"), py::arg("sigma_index"), py::arg("acc"));
}
