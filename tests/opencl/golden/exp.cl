
#pragma OPENCL FP_CONTRACT OFF  // elementwise code rounds as NumPy does

inline float irc_exp_f32(float x) {  // Cephes expf: 2^n * exp(r), |r| <= ln2/2
#pragma OPENCL FP_CONTRACT ON
    const float xc = x > 88.72283935546875f ? 88.72283935546875f : (x < -104.0f ? -104.0f : x);
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // rint
    float r = n * -0.693359375f + xc;
    r = n * 2.12194440e-4f + r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float r2 = r * r, r1 = r + 1.0f;
    float y = p * r2 + r1;
    const int ni = (int)n, n1 = ni / 2, n2 = ni - n1;
    y = y * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
    y = x > 88.72283935546875f ? INFINITY : y;
    return x != x ? x : y;
}

// ===== f: host schedule =====
//   f_k0_map  grid [N]

__kernel void f_k0_map(
    const long chunk,
    const long d_N,
    __global const float* restrict a_a0,
    __global float* restrict out0) {
    const long c1 = (long)get_global_id(0) * chunk;  // a chunk of the innermost loop
    const long e2 = c1 + chunk < d_N ? c1 + chunk : d_N;
    for (long i3 = c1; i3 < e2; ++i3) {
        const float v4 = a_a0[i3];
        const float v5 = irc_exp_f32(v4);
        out0[i3] = v5;
    }
}
