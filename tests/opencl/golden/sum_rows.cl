
#pragma OPENCL FP_CONTRACT OFF  // elementwise code rounds as NumPy does

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
        float acc4 = 0.0f;
        for (long i5 = 0L; i5 < 3L; ++i5) {
            const float v6 = a_a0[i3 * 3 + i5];
            const float v7 = acc4 + v6;
            acc4 = v7;
        }
        out0[i3] = acc4;
    }
}
