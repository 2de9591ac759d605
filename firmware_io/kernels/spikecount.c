/* Spike counting on packed planes: the one hot loop of TFP, in C.
 *
 * spike_count_bits(planes, n, stride, nbytes, counts)
 *   counts[8*j + k] = number of planes i < n whose byte j has bit k set
 *   planes: n rows of nbytes bytes, row i starting at planes + i*stride; counts: 8*nbytes uint32.
 *
 * Bits are counted in lanes: a 64-bit word holds eight bytes, and (word >> k) & 0x0101..01 isolates
 * bit k of each of them, so adding such words keeps eight independent 8-bit counters. Up to 255
 * planes are summed that way, then the lanes are spread into the uint32 counts. The inner loop runs
 * over consecutive words of one plane and vectorises. Assumes a little-endian machine (x86-64, ARM64).
 * Returns 0, or -1 when scratch memory cannot be allocated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANE_MASK 0x0101010101010101ULL
#define MAX_LANE_PLANES 255

int spike_count_bits(const uint8_t *planes, int64_t n, int64_t stride, int64_t nbytes, uint32_t *counts) {
    const int64_t nwords = (nbytes + 7) / 8, full = nbytes / 8, tail = nbytes % 8;
    uint64_t *lanes = malloc((size_t)(8 * nwords) * sizeof(uint64_t));
    if (!lanes) return -1;
    memset(counts, 0, (size_t)(8 * nbytes) * sizeof(uint32_t));
    for (int64_t start = 0; start < n; start += MAX_LANE_PLANES) {
        const int64_t stop = start + MAX_LANE_PLANES < n ? start + MAX_LANE_PLANES : n;
        memset(lanes, 0, (size_t)(8 * nwords) * sizeof(uint64_t));
        for (int64_t i = start; i < stop; i++) {
            const uint8_t *row = planes + i * stride;
            for (int k = 0; k < 8; k++) {
                uint64_t *lane = lanes + k * nwords;
                for (int64_t w = 0; w < full; w++) {
                    uint64_t x; memcpy(&x, row + 8 * w, 8);
                    lane[w] += (x >> k) & LANE_MASK;
                }
            }
            if (tail) {
                uint64_t x = 0; memcpy(&x, row + full * 8, (size_t)tail);
                for (int k = 0; k < 8; k++) lanes[k * nwords + full] += (x >> k) & LANE_MASK;
            }
        }
        for (int64_t w = 0; w < nwords; w++) {
            for (int k = 0; k < 8; k++) {
                uint64_t v = lanes[k * nwords + w];
                uint32_t *c = counts + 64 * w + k;
                int64_t nb = nbytes - 8 * w < 8 ? nbytes - 8 * w : 8;
                for (int64_t b = 0; b < nb; b++) c[8 * b] += (uint32_t)((v >> (8 * b)) & 0xff);
            }
        }
    }
    free(lanes);
    return 0;
}
