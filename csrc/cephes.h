// Cephes' double-precision exp and log (S. Moshier, Cephes Math Library 2.8), op for op: IEEE additions,
// multiplications and divisions, floor, frexp and ldexp only, so the same bits on every CPU, wherever libm or numpy
// would pick per-CPU code (numpy's AVX-512 exp and log differ from libm's in about 5% of results). Compiled with
// -ffp-contract=off by every extension that includes it. Accuracy: within 2 ulps of libm (tests/test_kernels.py).
#pragma once

#include <cmath>
#include <limits>

namespace ef_cephes {

inline double polevl(double x, const double* c, int n) {
    double y = c[0];
    for (int i = 1; i <= n; ++i) y = y * x + c[i];
    return y;
}

inline double p1evl(double x, const double* c, int n) {  // leading coefficient 1, n more
    double y = x + c[0];
    for (int i = 1; i < n; ++i) y = y * x + c[i];
    return y;
}

inline double det_exp(double x) {
    static const double P[] = {1.26177193074810590878E-4, 3.02994407707441961300E-2, 9.99999999999999999910E-1};
    static const double Q[] = {3.00198505138664455042E-6, 2.52448340349684104192E-3, 2.27265548208155028766E-1,
                               2.00000000000000000009E0};
    if (std::isnan(x)) return x;
    if (x > 7.09782712893383996843E2) return std::numeric_limits<double>::infinity();
    if (x < -745.2) return 0.0;
    const double n = std::floor(1.4426950408889634073599 * x + 0.5);
    x = x - n * 6.93145751953125E-1;
    x = x - n * 1.42860682030941723212E-6;
    const double xx = x * x, px = x * polevl(xx, P, 2);
    return std::ldexp(1.0 + 2.0 * (px / (polevl(xx, Q, 3) - px)), int(n));
}

inline double det_log(double x) {
    static const double P[] = {1.01875663804580931796E-4, 4.97494994976747001425E-1, 4.70579119878881725854E0,
                               1.44989225341610930846E1, 1.79368678507819816313E1, 7.70838733755885391666E0};
    static const double Q[] = {1.12873587189167450590E1, 4.52279145837532221105E1, 8.29875266912776603211E1,
                               7.11544750618563894466E1, 2.31251620126765340583E1};
    static const double R[] = {-7.89580278884799154124E-1, 1.63866645699558079767E1, -6.41409952958715622951E1};
    static const double S[] = {-3.56722798256324312549E1, 3.12093766372244180303E2, -7.69691943550460008604E2};
    const double SQRTH = 0.70710678118654752440;
    if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) return x;
    if (x <= 0) return x == 0 ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
    int e;
    x = std::frexp(x, &e);  // x in [0.5, 1)
    if (e > 2 || e < -2) {  // log(x) = 2 atanh(z / y) by a rational function of (z / y)^2
        double z, y;
        if (x < SQRTH) {
            e -= 1;
            z = x - 0.5;
            y = 0.5 * z + 0.5;
        } else {
            z = x - 0.5;
            z -= 0.5;
            y = 0.5 * x + 0.5;
        }
        x = z / y;
        z = x * x;
        z = x * (z * polevl(z, R, 2) / p1evl(z, S, 3));
        z = z - e * 2.121944400546905827679e-4;
        z = z + x;
        return z + e * 6.93359375E-1;
    }
    if (x < SQRTH) {
        e -= 1;
        x = std::ldexp(x, 1) - 1.0;
    } else {
        x = x - 1.0;
    }
    const double z = x * x;
    double y = x * (z * polevl(x, P, 5) / p1evl(x, Q, 5));
    if (e) y = y - e * 2.121944400546905827679e-4;
    y = y - std::ldexp(z, -1);
    double r = x + y;
    if (e) r = r + e * 6.93359375E-1;
    return r;
}

}  // namespace ef_cephes
