// Macros shared by the g++ (CPU) and nvcc (CUDA) translation units.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SGMN_HD __host__ __device__
#else
#define SGMN_HD
#endif

#define SGMN_HD_INLINE SGMN_HD inline
