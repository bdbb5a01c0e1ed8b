// CPU-only helper shared by the CSR kernels: run a function over work-balanced chunks of rows.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "../common/segment.h"

namespace scalegmn {

// Elements of work below which a chunk is not worth a thread.
constexpr int64_t kMinChunkWork = 16384;

// Runs fn(row_begin, row_end) over one chunk of rows per thread, the chunks cut so that each
// holds about the same number of (positions + rows) of the CSR `ptr` (non-decreasing, rows + 1
// entries; ptr[0] may be > 0). `width` (channels) scales the work estimate that decides how many
// threads to use. Chunk boundaries depend only on the data and the thread count; every row is
// handled by exactly one call.
template <typename index_t, typename F>
void parallel_csr_rows(const index_t* ptr, int64_t rows, int64_t width, const F& fn) {
  const int64_t base = static_cast<int64_t>(ptr[0]);
  const int64_t total = static_cast<int64_t>(ptr[rows]) - base + rows;  // positions + rows
  const int64_t work = total * std::max<int64_t>(width, 1);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), work / kMinChunkWork));
  if (chunks == 1) {
    if (rows > 0) fn(int64_t(0), rows);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t kb, int64_t ke) {
    for (int64_t k = kb; k < ke; ++k) {
      const int64_t rb = balanced_row_split(ptr, rows, 1, base + total * k / chunks);
      const int64_t re = k + 1 == chunks ? rows : balanced_row_split(ptr, rows, 1, base + total * (k + 1) / chunks);
      if (rb < re) fn(rb, re);
    }
  });
}

}  // namespace scalegmn
