// Philox4x32-10 (Salmon et al. 2011, Random123) keyed like the Triton kernels' perturb, for the CPU path.
//
// For row r of length dim, element j is normal j % 4 of the Philox block at counters (j / 4, r & 0xffffffff,
// r >> 32, 0) under the profile's 64-bit noise key: the words (w0, w1) and (w2, w3) each become the two uniforms
// of Triton's pair_uniform_to_normal (uint_to_uniform_float: the word as int32, x < 0 -> -x - 1, times
// 4.6566127342e-10 in float32), and each pair gives r cos(theta) then r sin(theta). This file computes those
// words and uniforms (integer and single float ops; AVX-512, AVX2 or scalar loops, the same bits), then
// r = sqrt(-2 log u1) and the sine and cosine with Cephes' single-precision log, sin and cos (2.5 float32 ulps at
// most) and, for perturb, x = x0 + sigma_row * n, in one pass over blocks that stay in L1. The transform is
// written once, as plain element-wise code that the compiler vectorises for each instruction set with no
// contraction, so every level gives the same bits, and the twin (entropic_fast.kernels.reference.noise and
// perturb) computes the same operations in torch: the same bits again. Threaded over elements, GIL released.
// Also here: a data tensor's row draws (rows), from the same key.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace {

constexpr uint32_t PHILOX_A = 0xD2511F53u, PHILOX_B = 0xCD9E8D57u;
constexpr uint32_t KEY_A = 0x9E3779B9u, KEY_B = 0xBB67AE85u;

// Ten rounds of Philox4x32 on the counters c (in place), key (k0, k1).
inline void philox(uint32_t k0, uint32_t k1, uint32_t c[4]) {
    for (int round = 0; round < 10; ++round) {
        const uint64_t pb = uint64_t(PHILOX_B) * c[2], pa = uint64_t(PHILOX_A) * c[0];
        const uint32_t n0 = uint32_t(pb >> 32) ^ c[1] ^ k0, n1 = uint32_t(pb);
        const uint32_t n2 = uint32_t(pa >> 32) ^ c[3] ^ k1, n3 = uint32_t(pa);
        c[0] = n0; c[1] = n1; c[2] = n2; c[3] = n3;
        k0 += KEY_A;
        k1 += KEY_B;
    }
}

inline float to_uniform(uint32_t word) {
    int32_t x = int32_t(word);  // two's complement, as Triton's bitcast
    if (x < 0) x = -x - 1;
    return float(x) * 4.6566127342e-10f;
}

// The uniforms of Philox blocks g0 .. g1 - 1 (counters (g, c1, c2, 0)): (w0, w1) into ua, ta and (w2, w3) into ub,
// tb at g - g0; the first of each pair clamped to 1e-7, the second times 2 pi (pair_uniform_to_normal's).
struct Pairs {
    float *ua, *ta, *ub, *tb;
    Pairs at(int64_t i) const { return {ua + i, ta + i, ub + i, tb + i}; }
};

inline void fill_scalar(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, int64_t g0, int64_t g1, Pairs p) {
    const float two_pi = 6.283185307179586f;
    for (int64_t g = g0; g < g1; ++g) {
        uint32_t c[4] = {uint32_t(g), c1, c2, 0u};
        philox(k0, k1, c);
        const float a = to_uniform(c[0]), b = to_uniform(c[2]);
        p.ua[g - g0] = a > 1.0e-7f ? a : 1.0e-7f;
        p.ta[g - g0] = two_pi * to_uniform(c[1]);
        p.ub[g - g0] = b > 1.0e-7f ? b : 1.0e-7f;
        p.tb[g - g0] = two_pi * to_uniform(c[3]);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EF_HAVE_AVX2 1

// (hi, lo) 32-bit halves of the eight 32x32 -> 64-bit products m * c (AVX2 multiplies even lanes only).
__attribute__((target("avx2"))) inline void mul_hi_lo(__m256i m, __m256i c, __m256i* hi, __m256i* lo) {
    const __m256i even = _mm256_mul_epu32(m, c);
    const __m256i odd = _mm256_mul_epu32(m, _mm256_srli_epi64(c, 32));
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

__attribute__((target("avx2"))) inline __m256 to_uniform8(__m256i w) {
    const __m256i neg = _mm256_srai_epi32(w, 31);  // x < 0 -> -x - 1 == ~x
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_xor_si256(w, neg)), _mm256_set1_ps(4.6566127342e-10f));
}

// U x 8 Philox blocks at a time (U independent vectors keep the multipliers busy): the same integer and float32
// operations as fill_scalar, so the same bits.
template <int U>
__attribute__((target("avx2"))) void fill_avx2(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, int64_t g0,
                                                int64_t g1, Pairs p) {
    const __m256i A = _mm256_set1_epi32(int(PHILOX_A)), B = _mm256_set1_epi32(int(PHILOX_B));
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 floor = _mm256_set1_ps(1.0e-7f), two_pi = _mm256_set1_ps(6.283185307179586f);
    int64_t g = g0;
    for (; g + 8 * U <= g1; g += 8 * U) {
        __m256i x0[U], x1[U], x2[U], x3[U];
        for (int u = 0; u < U; ++u) {
            x0[u] = _mm256_add_epi32(_mm256_set1_epi32(int(uint32_t(g + 8 * u))), lane);
            x1[u] = _mm256_set1_epi32(int(c1));
            x2[u] = _mm256_set1_epi32(int(c2));
            x3[u] = _mm256_setzero_si256();
        }
        uint32_t ka = k0, kb = k1;
        for (int round = 0; round < 10; ++round) {
            const __m256i va = _mm256_set1_epi32(int(ka)), vb = _mm256_set1_epi32(int(kb));
            for (int u = 0; u < U; ++u) {
                __m256i hb, lb, ha, la;
                mul_hi_lo(B, x2[u], &hb, &lb);
                mul_hi_lo(A, x0[u], &ha, &la);
                x0[u] = _mm256_xor_si256(_mm256_xor_si256(hb, x1[u]), va);
                x1[u] = lb;
                x2[u] = _mm256_xor_si256(_mm256_xor_si256(ha, x3[u]), vb);
                x3[u] = la;
            }
            ka += KEY_A;
            kb += KEY_B;
        }
        for (int u = 0; u < U; ++u) {
            const int64_t i = g - g0 + 8 * u;
            _mm256_storeu_ps(p.ua + i, _mm256_max_ps(to_uniform8(x0[u]), floor));
            _mm256_storeu_ps(p.ta + i, _mm256_mul_ps(two_pi, to_uniform8(x1[u])));
            _mm256_storeu_ps(p.ub + i, _mm256_max_ps(to_uniform8(x2[u]), floor));
            _mm256_storeu_ps(p.tb + i, _mm256_mul_ps(two_pi, to_uniform8(x3[u])));
        }
    }
    if (U > 1)
        fill_avx2<1>(k0, k1, c1, c2, g, g1, p.at(g - g0));
    else
        fill_scalar(k0, k1, c1, c2, g, g1, p.at(g - g0));
}
// The same with AVX-512: sixteen lanes, two vectors in flight.
// Each half gathered by one two-source permute: lane 2i from the even products, lane 2i + 1 from the odd ones.
__attribute__((target("avx512f"))) inline void mul_hi_lo16(__m512i m, __m512i c, __m512i* hi, __m512i* lo) {
    const __m512i even = _mm512_mul_epu32(m, c);
    const __m512i odd = _mm512_mul_epu32(m, _mm512_srli_epi64(c, 32));
    const __m512i pick_hi = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    const __m512i pick_lo = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    *hi = _mm512_permutex2var_epi32(even, pick_hi, odd);
    *lo = _mm512_permutex2var_epi32(even, pick_lo, odd);
}

__attribute__((target("avx512f"))) inline __m512 to_uniform16(__m512i w) {
    const __m512i neg = _mm512_srai_epi32(w, 31);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_xor_si512(w, neg)), _mm512_set1_ps(4.6566127342e-10f));
}

template <int U>
__attribute__((target("avx512f"))) void fill_avx512(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, int64_t g0,
                                                    int64_t g1, Pairs p) {
    const __m512i A = _mm512_set1_epi32(int(PHILOX_A)), B = _mm512_set1_epi32(int(PHILOX_B));
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 floor = _mm512_set1_ps(1.0e-7f), two_pi = _mm512_set1_ps(6.283185307179586f);
    int64_t g = g0;
    for (; g + 16 * U <= g1; g += 16 * U) {
        __m512i x0[U], x1[U], x2[U], x3[U];
        for (int u = 0; u < U; ++u) {
            x0[u] = _mm512_add_epi32(_mm512_set1_epi32(int(uint32_t(g + 16 * u))), lane);
            x1[u] = _mm512_set1_epi32(int(c1));
            x2[u] = _mm512_set1_epi32(int(c2));
            x3[u] = _mm512_setzero_si512();
        }
        uint32_t ka = k0, kb = k1;
        for (int round = 0; round < 10; ++round) {
            const __m512i va = _mm512_set1_epi32(int(ka)), vb = _mm512_set1_epi32(int(kb));
            for (int u = 0; u < U; ++u) {
                __m512i hb, lb, ha, la;
                mul_hi_lo16(B, x2[u], &hb, &lb);
                mul_hi_lo16(A, x0[u], &ha, &la);
                x0[u] = _mm512_xor_si512(_mm512_xor_si512(hb, x1[u]), va);
                x1[u] = lb;
                x2[u] = _mm512_xor_si512(_mm512_xor_si512(ha, x3[u]), vb);
                x3[u] = la;
            }
            ka += KEY_A;
            kb += KEY_B;
        }
        for (int u = 0; u < U; ++u) {
            const int64_t i = g - g0 + 16 * u;
            _mm512_storeu_ps(p.ua + i, _mm512_max_ps(to_uniform16(x0[u]), floor));
            _mm512_storeu_ps(p.ta + i, _mm512_mul_ps(two_pi, to_uniform16(x1[u])));
            _mm512_storeu_ps(p.ub + i, _mm512_max_ps(to_uniform16(x2[u]), floor));
            _mm512_storeu_ps(p.tb + i, _mm512_mul_ps(two_pi, to_uniform16(x3[u])));
        }
    }
    fill_avx2<1>(k0, k1, c1, c2, g, g1, p.at(g - g0));  // the tail (AVX-512F CPUs have AVX2)
}
#endif

// Cephes logf (S. Moshier): log(x) for x in [1e-7, 1), the clamped first uniform: no special cases.
inline float cephes_log(float x) {
    int32_t bits;
    std::memcpy(&bits, &x, 4);
    int32_t e = ((bits >> 23) & 0xff) - 126;
    const int32_t mbits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
    float m;
    std::memcpy(&m, &mbits, 4);
    const bool low = m < 0.707106781186547524f;
    e -= low ? 1 : 0;
    m = (low ? m + m : m) - 1.0f;
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    const float fe = float(e);
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return (m + y) + 0.693359375f * fe;
}

// Cephes sinf and cosf: sin(x) and cos(x) for x in [0, 2 pi), one reduction by multiples of pi/4 (Cody-Waite,
// three parts).
inline void cephes_sincos(float x, float* sin, float* cos) {
    int32_t j = int32_t(x * 1.27323954473516f);  // x >= 0: truncation is floor
    j += j & 1;
    const float y = float(j);
    const float r = ((x - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
    const float z = r * r;
    float s = -1.9515295891e-4f;
    s = s * z + 8.3321608736e-3f;
    s = s * z - 1.6666654611e-1f;
    s = s * z * r + r;
    float c = 2.443315711809948e-5f;
    c = c * z - 1.388731625493765e-3f;
    c = c * z + 4.166664568298827e-2f;
    c = c * z * z - 0.5f * z + 1.0f;
    const bool swap = (j & 2) != 0;  // octants 2 and 6 (near pi/2, 3 pi/2): each takes the other's polynomial
    const float sv = swap ? c : s, cv = swap ? s : c;
    *sin = (j & 4) ? -sv : sv;
    *cos = ((j + 2) & 4) ? -cv : cv;
}

// Box-Muller of n pairs: r = sqrt(-2 log u1), c = r cos(theta), s = r sin(theta).
inline void box_muller(const float* u1, const float* theta, float* c, float* s, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        const float r = std::sqrt(-2.0f * cephes_log(u1[j]));
        float sn, cs;
        cephes_sincos(theta[j], &sn, &cs);
        c[j] = r * cs;
        s[j] = r * sn;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) void box_muller_avx512(const float* u1, const float* theta, float* c, float* s,
                                                          int64_t n) {
    box_muller(u1, theta, c, s, n);
}
__attribute__((target("avx2"))) void box_muller_avx2(const float* u1, const float* theta, float* c, float* s,
                                                     int64_t n) {
    box_muller(u1, theta, c, s, n);
}
#endif

// The instruction set of the loops below (EF_NOISE_SIMD=avx2 or scalar caps it, for tests).
int simd_level() {
#ifdef EF_HAVE_AVX2
    const char* cap = std::getenv("EF_NOISE_SIMD");
    const std::string want = cap ? cap : "";
    if (want == "scalar") return 0;
    if (want != "avx2" && __builtin_cpu_supports("avx512f")) return 2;
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

// Philox blocks [g0, g1) of one row into p: sixteen or eight blocks at a time with AVX-512 or AVX2 where the CPU has
// them (EF_NOISE_SIMD=avx2 or scalar caps the choice, for tests), else one at a time.
void fill_row(uint32_t k0, uint32_t k1, uint32_t c1, uint32_t c2, int64_t g0, int64_t g1, Pairs p) {
#ifdef EF_HAVE_AVX2
    static const int level = simd_level();
    if (level == 2) return fill_avx512<2>(k0, k1, c1, c2, g0, g1, p);
    if (level == 1) return fill_avx2<4>(k0, k1, c1, c2, g0, g1, p);
#endif
    fill_scalar(k0, k1, c1, c2, g0, g1, p);
}

void box_muller_block(const float* u1, const float* theta, float* c, float* s, int64_t n) {
#ifdef EF_HAVE_AVX2
    static const int level = simd_level();
    if (level == 2) return box_muller_avx512(u1, theta, c, s, n);
    if (level == 1) return box_muller_avx2(u1, theta, c, s, n);
#endif
    box_muller(u1, theta, c, s, n);
}

constexpr int64_t BLOCK = 512;  // elements drawn and transformed at a time (128 Philox blocks): in L1
constexpr int64_t Q = BLOCK / 4;

// Elements [j0, j1) of one row, inside the BLOCK elements from a (a multiple of 4): out = x0 + s n, or n where x0 is
// null. Normal k of block g is c_a, s_a, c_b, s_b for k = 0, 1, 2, 3 (the twin's order).
template <typename T>
void draw_block(uint32_t k0, uint32_t k1, uint64_t rid, int64_t a, int64_t j0, int64_t j1, const T* x0, T s, T* out) {
    float u[4 * Q], n[4 * Q];  // ua ub | ta tb, then ca cb | sa sb: pairs a and b adjacent, one transform over both
    const int64_t groups = (j1 - a + 3) / 4;
    fill_row(k0, k1, uint32_t(rid), uint32_t(rid >> 32), a / 4, a / 4 + groups,
             {u, u + 2 * Q, u + groups, u + 2 * Q + groups});
    box_muller_block(u, u + 2 * Q, n, n + 2 * Q, 2 * groups);
    float v[BLOCK];
    for (int64_t g = 0; g < groups; ++g) {
        v[4 * g] = n[g];
        v[4 * g + 1] = n[2 * Q + g];
        v[4 * g + 2] = n[groups + g];
        v[4 * g + 3] = n[2 * Q + groups + g];
    }
    const float* w = v + (j0 - a);
    const int64_t m = j1 - j0;
    if (!x0) {
        for (int64_t j = 0; j < m; ++j) out[j] = T(w[j]);
        return;
    }
    for (int64_t j = 0; j < m; ++j) out[j] = x0[j] + s * T(w[j]);  // the twin's add_noise: two roundings
}

// Flat elements [lo, hi) of the (rows, dim) output: out = x0 + sigma_row n, or n where x0 is null.
template <typename T>
void draw(uint64_t key, const int64_t* rows, int64_t n_rows, int64_t dim, const T* x0, const T* sigma, T* out,
          int64_t lo, int64_t hi) {
    const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
    for (int64_t r = lo / dim; r < n_rows && r * dim < hi; ++r) {
        const int64_t j0 = std::max<int64_t>(lo - r * dim, 0), j1 = std::min<int64_t>(hi - r * dim, dim);
        for (int64_t a = j0 & ~int64_t(3); a < j1; a += BLOCK) {
            const int64_t b = std::max(a, j0), e = std::min(a + BLOCK, j1);
            draw_block<T>(k0, k1, uint64_t(rows[r]), a, b, e, x0 ? x0 + r * dim + b : nullptr, sigma ? sigma[r] : T(0),
                          out + r * dim + b);
        }
    }
}

template <typename T>
void draw_threaded(uint64_t key, const int64_t* rows, int64_t n_rows, int64_t dim, const T* x0, const T* sigma,
                   T* out, int threads) {
    py::gil_scoped_release release;
    const int64_t total = n_rows * dim;
    const int64_t n = std::max<int64_t>(1, std::min<int64_t>(threads, (total + 16383) / 16384));
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < n; ++t)
        pool.emplace_back(draw<T>, key, rows, n_rows, dim, x0, sigma, out, total * t / n, total * (t + 1) / n);
    draw<T>(key, rows, n_rows, dim, x0, sigma, out, 0, total / n);
    for (auto& th : pool) th.join();
}

using Rows = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

py::array_t<float> normal(uint64_t key, Rows row_ids, int64_t dim, int threads) {
    if (row_ids.ndim() != 1) throw py::value_error("row_ids must be 1-D");
    if (dim < 1) throw py::value_error("dim must be >= 1, got " + std::to_string(dim));
    py::array_t<float> out({row_ids.shape(0), dim});
    draw_threaded<float>(key, row_ids.data(), row_ids.shape(0), dim, nullptr, nullptr, out.mutable_data(), threads);
    return out;
}

template <typename T>
py::array_t<T> perturb(uint64_t key, Rows row_ids, py::array_t<T, py::array::c_style> x0,
                       py::array_t<T, py::array::c_style> sigma, int threads) {
    if (row_ids.ndim() != 1 || x0.ndim() != 2 || sigma.ndim() != 1 || x0.shape(0) != row_ids.shape(0) ||
        sigma.shape(0) != row_ids.shape(0))
        throw py::value_error("x0 must be (rows, dim), with one row id and one sigma per row");
    if (x0.shape(1) < 1) throw py::value_error("rows must have at least one element");
    py::array_t<T> out({x0.shape(0), x0.shape(1)});
    draw_threaded<T>(key, row_ids.data(), x0.shape(0), x0.shape(1), x0.data(), sigma.data(), out.mutable_data(),
                     threads);
    return out;
}

// Row indices into a data tensor of n rows: for row id r, the Philox block of counters (ROW_COUNTER, r & 0xffffffff,
// r >> 32, 0), its first two words as one 64-bit word u, and floor(u n / 2^64) (Lemire 2019; bias below n / 2^64).
constexpr uint32_t ROW_COUNTER = 0xFFFFFFFEu;  // no noise block uses it (the importance draw takes 0xFFFFFFFF)

inline uint64_t mul_hi64(uint64_t a, uint64_t b) {
    const uint64_t a0 = uint32_t(a), a1 = a >> 32, b0 = uint32_t(b), b1 = b >> 32;
    const uint64_t p00 = a0 * b0, p10 = a1 * b0, p01 = a0 * b1, p11 = a1 * b1;
    const uint64_t mid = (p00 >> 32) + uint32_t(p10) + p01;
    return p11 + (p10 >> 32) + (mid >> 32);
}

py::array_t<int64_t> rows(uint64_t key, Rows row_ids, int64_t n) {
    if (row_ids.ndim() != 1) throw py::value_error("row_ids must be 1-D");
    if (n < 1) throw py::value_error("the data must have at least one row, got " + std::to_string(n));
    const int64_t m = row_ids.shape(0);
    py::array_t<int64_t> out(m);
    const int64_t* rid = row_ids.data();
    int64_t* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (int64_t r = 0; r < m; ++r) {
            uint32_t c[4] = {ROW_COUNTER, uint32_t(uint64_t(rid[r])), uint32_t(uint64_t(rid[r]) >> 32), 0u};
            philox(uint32_t(key), uint32_t(key >> 32), c);
            o[r] = int64_t(mul_hi64(uint64_t(c[0]) | (uint64_t(c[1]) << 32), uint64_t(n)));
        }
    }
    return out;
}

py::tuple words(uint64_t key, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3) {
    // the full 4-word Philox4x32-10 block, for known-answer tests
    uint32_t c[4] = {c0, c1, c2, c3};
    philox(uint32_t(key), uint32_t(key >> 32), c);
    return py::make_tuple(c[0], c[1], c[2], c[3]);
}

}  // namespace

PYBIND11_MODULE(_noise, m) {
    m.doc() = "Philox4x32-10 normal noise and row draws keyed like the Triton kernels' tl.randn (see csrc/noise.cpp)";
    m.def("normal", &normal, py::arg("key"), py::arg("row_ids"), py::arg("dim"), py::arg("threads") = 1,
          "Standard normal float32 noise (rows, dim) keyed by (key, row id, element index).");
    m.def("perturb", &perturb<float>, py::arg("key"), py::arg("row_ids"), py::arg("x0"), py::arg("sigma"),
          py::arg("threads") = 1, "x0 + sigma_row * noise for x0 (rows, dim), in x0's dtype (float32 or float64).");
    m.def("perturb", &perturb<double>, py::arg("key"), py::arg("row_ids"), py::arg("x0"), py::arg("sigma"),
          py::arg("threads") = 1);
    m.def("rows", &rows, py::arg("key"), py::arg("row_ids"), py::arg("n"),
          "Each row id's index in [0, n): a data tensor's draw (see csrc/noise.cpp).");
    m.def("simd", []() { return std::string(simd_level() == 2 ? "avx512" : simd_level() == 1 ? "avx2" : "scalar"); },
          "The instruction set the noise loop uses on this CPU (EF_NOISE_SIMD=avx2|scalar caps it).");
    m.def("philox", &words, py::arg("key"), py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"),
          "One Philox4x32-10 block: four uint32 words.");
}
