
#pragma OPENCL FP_CONTRACT OFF  // elementwise code rounds as NumPy does

// ===== f: host schedule =====
//   gemm out0 = a_a0 @ a_a1  [N x 3 x 5]

