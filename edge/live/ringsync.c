/* The plane ring's shared words and slots with explicit C11 acquire/release ordering.
 *
 * The ring (edge/live/ring.py) is written by one process and read by another. On a weakly ordered
 * CPU (aarch64: Jetson) plain loads and stores may become visible out of program order, so every
 * access that publishes or observes progress goes through here:
 *
 *   ring_load(p)            acquire load of one int64 header word
 *   ring_store(p, v)        release store of one int64 header word
 *   ring_add(p, n)          atomic add (release) to one int64 header word
 *   ring_write_slots(...)   the writer's side of the per-slot seqlock for planes [first, first + n)
 *   ring_read_slots(...)    the reader's side for planes [start, start + n)
 *
 * Seqlock (per slot s, plane i, capacity C; stamps only grow: i, then OPEN, then i + C):
 *   writer: stamps[s] = OPEN (relaxed); release fence; copy data and time; stamps[s] = i (release)
 *   reader: pre = stamps[s] (acquire); copy data and time; acquire fence; post = stamps[s] (relaxed)
 * A plane is valid when pre == post == i. If pre == i the copy saw at least plane i's bytes (the
 * release store of i follows them); if the copy saw any byte of a later write of the slot, that
 * writer's release fence pairs with the reader's acquire fence, so its OPEN store is visible to
 * the post load and the plane is rejected. The copies themselves are plain memcpy between the
 * fences, as in every practical seqlock: a racing copy may read a mix of bytes, and the stamp
 * check throws exactly those copies away.
 *
 * Slots wrap: plane i lives in slot i % C; n <= C. Built by firmware_io.cbuild on first use.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#define OPEN (-1)

/* Shared between processes, so the atomics must be lock-free (no hidden lock in one process's memory). */
#if ATOMIC_LLONG_LOCK_FREE != 2
#error "64-bit atomics are not lock-free here"
#endif
_Static_assert(sizeof(_Atomic int64_t) == sizeof(int64_t) && sizeof(long long) == sizeof(int64_t),
               "an atomic int64 must be a plain 64-bit word");

static inline _Atomic int64_t *word(int64_t *p) { return (_Atomic int64_t *)p; }

int64_t ring_load(int64_t *p) { return atomic_load_explicit(word(p), memory_order_acquire); }

void ring_store(int64_t *p, int64_t value) { atomic_store_explicit(word(p), value, memory_order_release); }

void ring_add(int64_t *p, int64_t n) { atomic_fetch_add_explicit(word(p), n, memory_order_release); }

void ring_write_slots(int64_t *stamps, int64_t *t_ns, uint8_t *data, int64_t capacity, int64_t plane_bytes,
                      int64_t first, const uint8_t *planes, int64_t n, int64_t capture_t_ns) {
    for (int64_t k = 0; k < n; k++)
        atomic_store_explicit(word(stamps + (first + k) % capacity), OPEN, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int64_t k = 0; k < n; k++) {
        const int64_t s = (first + k) % capacity;
        memcpy(data + s * plane_bytes, planes + k * plane_bytes, (size_t)plane_bytes);
        t_ns[s] = capture_t_ns;
    }
    for (int64_t k = 0; k < n; k++)
        atomic_store_explicit(word(stamps + (first + k) % capacity), first + k, memory_order_release);
}

void ring_read_slots(int64_t *stamps, const int64_t *t_ns, const uint8_t *data, int64_t capacity,
                     int64_t plane_bytes, int64_t start, int64_t n, uint8_t *out, int64_t *out_t,
                     int64_t *pre, int64_t *post) {
    for (int64_t k = 0; k < n; k++)
        pre[k] = atomic_load_explicit(word(stamps + (start + k) % capacity), memory_order_acquire);
    for (int64_t k = 0; k < n; k++) {
        const int64_t s = (start + k) % capacity;
        memcpy(out + k * plane_bytes, data + s * plane_bytes, (size_t)plane_bytes);
        out_t[k] = t_ns[s];
    }
    atomic_thread_fence(memory_order_acquire);
    for (int64_t k = 0; k < n; k++)
        post[k] = atomic_load_explicit(word(stamps + (start + k) % capacity), memory_order_relaxed);
}
