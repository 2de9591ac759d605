/*
 * fake_spikelink.c -- a stand-in for the SpikeLink camera SDK, speaking the interface in
 * spikelink.h, for tests and demos without a camera.
 *
 * Only the dummy-file link (SL_LINK_DUMMY_FILE) has a "device": it replays a .dat file on its own
 * pthread, in blocks of planes_per_block planes, paced against an absolute schedule
 * (t0 + planes delivered / rate, CLOCK_MONOTONIC), looping or ending at end of file. Other link
 * types report SL_ERR_NO_DEVICE from spikelink_init.
 *
 * Faults are injected with fake_control(cmd, arg) (command in capitals) or, read once at the
 * first spikelink_init, with environment variables (for subprocesses; name in brackets):
 *   FAKE_VANISH_AFTER_BLOCKS n  [FAKE_SPIKELINK_VANISH_AFTER_BLOCKS]: after n more delivered blocks
 *       the device disappears: callbacks stop, get_state says DISCONNECTED, open fails.
 *   FAKE_COMEBACK_AFTER_MS ms   [FAKE_SPIKELINK_COMEBACK_MS]: a vanished device is back after ms
 *       (default 0; negative = never).
 *   FAKE_REFUSE_OPEN k          [FAKE_SPIKELINK_REFUSE_OPEN]: the next k opens fail (NO_DEVICE).
 *   FAKE_DROP_EVERY n           [FAKE_SPIKELINK_DROP_EVERY]: blocks with pts % n == n - 1 are
 *       skipped (pts still advances: the consumer sees a gap).
 *   FAKE_STALL_AFTER_BLOCKS n   [FAKE_SPIKELINK_STALL_AFTER_BLOCKS]: after n more blocks the
 *       callbacks stop while get_state still says RUNNING (a hung link).
 *   FAKE_RESET: clears faults and counters.
 * Queries (arg ignored): FAKE_Q_OUTSTANDING (frames delivered and not released), FAKE_Q_DELIVERED,
 * FAKE_Q_RELEASED, FAKE_Q_POOL_EMPTY (blocks lost because every pool frame was outstanding),
 * FAKE_Q_DROPPED, FAKE_Q_STARTS, FAKE_Q_OPEN_ATTEMPTS, and struct layout (sizes, offsets) so the
 * ctypes mirror can be checked. Command numbers are listed below and in firmware_io/spikelink.py.
 *
 * One device per process (global state), like a single-camera SDK.
 */
#define _GNU_SOURCE
#include "spikelink.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAKE_RESET               0
#define FAKE_VANISH_AFTER_BLOCKS 1
#define FAKE_COMEBACK_AFTER_MS   2
#define FAKE_REFUSE_OPEN         3
#define FAKE_DROP_EVERY          4
#define FAKE_STALL_AFTER_BLOCKS  5
#define FAKE_Q_OUTSTANDING       100
#define FAKE_Q_DELIVERED         101
#define FAKE_Q_RELEASED          102
#define FAKE_Q_POOL_EMPTY        103
#define FAKE_Q_DROPPED           104
#define FAKE_Q_STARTS            105
#define FAKE_Q_OPEN_ATTEMPTS     106
#define FAKE_Q_SIZEOF_FRAME      110
#define FAKE_Q_SIZEOF_PARAMS     111
#define FAKE_Q_OFFSET_FRAME_SIZE 112
#define FAKE_Q_OFFSET_FRAME_PTS  113
#define FAKE_Q_OFFSET_FRAME_TB   114
#define FAKE_Q_OFFSET_PARAMS_RATE 115
#define FAKE_Q_OFFSET_PARAMS_PATH 116

int64_t fake_control(int32_t cmd, int64_t arg);

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_cv_ready = 0;

static sl_init_params g_params;
static char g_path[4096];
static int32_t g_state = SL_STATE_CLOSED;
static sl_frame_callback g_callback = NULL;
static int32_t g_width, g_height;
static int64_t g_plane_bytes, g_file_planes;
static double g_rate_hz;
static int g_fd = -1;

static sl_frame *g_frames = NULL;
static uint8_t *g_buffers = NULL;
static int *g_in_use = NULL;
static int32_t g_pool = 0;

static pthread_t g_thread;
static int g_thread_running = 0;
static int g_stop = 0;

/* fault injection */
static int g_env_loaded = 0;
static int64_t g_vanish_countdown = -1;
static int64_t g_comeback_ms = 0;
static int64_t g_refuse_open = 0;
static int64_t g_drop_every = 0;
static int64_t g_stall_countdown = -1;
static int g_vanished = 0;
static int g_stalled = 0;
static int64_t g_vanish_ns = 0;

/* counters (cumulative over the process) */
static int64_t g_delivered = 0, g_released = 0, g_pool_empty = 0, g_dropped = 0, g_starts = 0,
               g_open_attempts = 0;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void ensure_cv(void) {
    if (!g_cv_ready) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&g_cv, &attr);
        pthread_condattr_destroy(&attr);
        g_cv_ready = 1;
    }
}

static int64_t env_int(const char *name, int64_t fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    return strtoll(v, NULL, 10);
}

static void load_env(void) {
    if (g_env_loaded) return;
    g_env_loaded = 1;
    g_vanish_countdown = env_int("FAKE_SPIKELINK_VANISH_AFTER_BLOCKS", -1);
    g_comeback_ms = env_int("FAKE_SPIKELINK_COMEBACK_MS", 0);
    g_refuse_open = env_int("FAKE_SPIKELINK_REFUSE_OPEN", 0);
    g_drop_every = env_int("FAKE_SPIKELINK_DROP_EVERY", 0);
    g_stall_countdown = env_int("FAKE_SPIKELINK_STALL_AFTER_BLOCKS", -1);
}

/* Called with g_mu held: a vanished device comes back once its comeback time has passed. */
static int device_present(void) {
    if (g_vanished && g_comeback_ms >= 0 && now_ns() >= g_vanish_ns + g_comeback_ms * 1000000LL) {
        g_vanished = 0;
    }
    return !g_vanished;
}

static int mode_geometry(int32_t mode, int32_t *w, int32_t *h, double *rate) {
    switch (mode) {
    case SL_MODE_400x250_20K: *w = 400; *h = 250; *rate = 20000.0; return 1;
    case SL_MODE_400x250_40K: *w = 400; *h = 250; *rate = 40000.0; return 1;
    case SL_MODE_1000x1000_20K: *w = 1000; *h = 1000; *rate = 20000.0; return 1;
    case SL_MODE_1000x1000_40K: *w = 1000; *h = 1000; *rate = 40000.0; return 1;
    case SL_MODE_2000x1000_20K: *w = 2000; *h = 1000; *rate = 20000.0; return 1;
    case SL_MODE_2000x1000_40K: *w = 2000; *h = 1000; *rate = 40000.0; return 1;
    default: return 0;
    }
}

static void free_pool(void) {
    free(g_frames); free(g_buffers); free(g_in_use);
    g_frames = NULL; g_buffers = NULL; g_in_use = NULL; g_pool = 0;
}

int32_t spikelink_init(const sl_init_params *params) {
    int32_t w, h;
    double rate;
    struct stat st;
    pthread_mutex_lock(&g_mu);
    ensure_cv();
    load_env();
    int32_t rc = SL_OK;
    if (g_thread_running || g_fd >= 0) { rc = SL_ERR_STATE; goto out; }
    if (!params || params->format != SL_FORMAT_GRAY1 || params->buffer_pool_size < 1 ||
        params->planes_per_block < 1 || !mode_geometry(params->mode, &w, &h, &rate) ||
        params->link_type < SL_LINK_PCIE || params->link_type > SL_LINK_DUMMY_FILE) {
        rc = SL_ERR_INVALID_ARG; goto out;
    }
    if (params->link_type != SL_LINK_DUMMY_FILE) { rc = SL_ERR_NO_DEVICE; goto out; }
    if (!params->file_path || strlen(params->file_path) >= sizeof(g_path)) { rc = SL_ERR_INVALID_ARG; goto out; }
    if (stat(params->file_path, &st) != 0) { rc = SL_ERR_IO; goto out; }
    int64_t plane_bytes = (int64_t)w * h / 8;
    if (st.st_size < plane_bytes || st.st_size % plane_bytes != 0) { rc = SL_ERR_INVALID_ARG; goto out; }
    g_params = *params;
    strcpy(g_path, params->file_path);
    g_params.file_path = g_path;
    g_width = w; g_height = h; g_plane_bytes = plane_bytes;
    g_file_planes = st.st_size / plane_bytes;
    g_rate_hz = params->rate_hz == 0 ? rate : params->rate_hz;
    g_state = SL_STATE_INITIALIZED;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int32_t spikelink_set_callback(sl_frame_callback callback) {
    pthread_mutex_lock(&g_mu);
    int32_t rc = SL_OK;
    if (g_thread_running) rc = SL_ERR_STATE;
    else g_callback = callback;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int32_t spikelink_open(void) {
    pthread_mutex_lock(&g_mu);
    int32_t rc = SL_OK;
    g_open_attempts++;
    if (g_state != SL_STATE_INITIALIZED) { rc = SL_ERR_STATE; goto out; }
    if (!device_present()) { rc = SL_ERR_NO_DEVICE; goto out; }
    if (g_refuse_open > 0) { g_refuse_open--; rc = SL_ERR_NO_DEVICE; goto out; }
    g_fd = open(g_path, O_RDONLY | O_CLOEXEC);
    if (g_fd < 0) { rc = SL_ERR_IO; goto out; }
    int32_t n = g_params.buffer_pool_size, ppb = g_params.planes_per_block;
    g_frames = calloc((size_t)n, sizeof(sl_frame));
    g_buffers = malloc((size_t)n * (size_t)ppb * (size_t)g_plane_bytes);
    g_in_use = calloc((size_t)n, sizeof(int));
    if (!g_frames || !g_buffers || !g_in_use) {
        free_pool(); close(g_fd); g_fd = -1; rc = SL_ERR_NO_MEMORY; goto out;
    }
    g_pool = n;
    g_state = SL_STATE_OPENED;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static void *delivery_thread(void *unused) {
    (void)unused;
    pthread_mutex_lock(&g_mu);
    const int32_t ppb = g_params.planes_per_block;
    const int64_t t0 = now_ns();
    int64_t pts = 0, file_plane = 0, planes_sent = 0;
    while (!g_stop) {
        if (g_rate_hz > 0) { /* absolute schedule: block k is due when its last plane is captured */
            int64_t n_next = ppb;
            int64_t due = t0 + (int64_t)((double)(planes_sent + n_next) * 1e9 / g_rate_hz);
            struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
            while (!g_stop && now_ns() < due) {
                pthread_cond_timedwait(&g_cv, &g_mu, &ts);
            }
            if (g_stop) break;
        }
        if (g_vanish_countdown == 0) {
            g_vanish_countdown = -1;
            g_vanished = 1;
            g_vanish_ns = now_ns();
            g_state = SL_STATE_DISCONNECTED;
            break;
        }
        if (g_stall_countdown == 0) {
            g_stall_countdown = -1;
            g_stalled = 1;
        }
        if (g_stalled) { /* hung link: nothing arrives, state still RUNNING */
            struct timespec ts;
            int64_t wake = now_ns() + 10000000LL;
            ts.tv_sec = wake / 1000000000LL; ts.tv_nsec = wake % 1000000000LL;
            pthread_cond_timedwait(&g_cv, &g_mu, &ts);
            continue;
        }
        if (file_plane >= g_file_planes) {
            if (g_params.loop) file_plane = 0;
            else { g_state = SL_STATE_END_OF_FILE; break; }
        }
        int64_t n = g_file_planes - file_plane < ppb ? g_file_planes - file_plane : ppb;
        int64_t this_pts = pts++;
        planes_sent += n;
        int64_t first = file_plane;
        file_plane += n;
        if (g_drop_every > 0 && this_pts % g_drop_every == g_drop_every - 1) { g_dropped++; continue; }
        int32_t slot = -1;
        for (int32_t i = 0; i < g_pool; i++) if (!g_in_use[i]) { slot = i; break; }
        if (slot < 0) { g_pool_empty++; continue; }
        uint8_t *buf = g_buffers + (size_t)slot * (size_t)ppb * (size_t)g_plane_bytes;
        size_t want = (size_t)(n * g_plane_bytes);
        ssize_t got = pread(g_fd, buf, want, (off_t)(first * g_plane_bytes));
        if (got != (ssize_t)want) { g_state = SL_STATE_DISCONNECTED; break; }
        sl_frame *frame = &g_frames[slot];
        memset(frame, 0, sizeof(*frame));
        frame->data[0] = buf;
        frame->linesize[0] = g_width / 8;
        frame->size = (int64_t)want;
        frame->width = g_width;
        frame->height = g_height;
        frame->cusum = (int32_t)n;
        frame->format = SL_FORMAT_GRAY1;
        frame->pts = this_pts;
        frame->time_base_num = ppb;
        frame->time_base_den = g_rate_hz > 0 ? (int32_t)g_rate_hz : 40000;
        g_in_use[slot] = 1;
        g_delivered++;
        if (g_vanish_countdown > 0) g_vanish_countdown--;
        if (g_stall_countdown > 0) g_stall_countdown--;
        sl_frame_callback cb = g_callback;
        pthread_mutex_unlock(&g_mu);
        if (cb) cb(frame); /* without the lock: the consumer may release from inside */
        pthread_mutex_lock(&g_mu);
    }
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

int32_t spikelink_start(void) {
    pthread_mutex_lock(&g_mu);
    int32_t rc = SL_OK;
    if ((g_state != SL_STATE_OPENED && g_state != SL_STATE_STOPPED) || g_thread_running) { rc = SL_ERR_STATE; goto out; }
    if (!device_present()) { rc = SL_ERR_NO_DEVICE; goto out; }
    g_stop = 0;
    g_stalled = 0;
    if (pthread_create(&g_thread, NULL, delivery_thread, NULL) != 0) { rc = SL_ERR_NO_MEMORY; goto out; }
    g_thread_running = 1;
    g_state = SL_STATE_RUNNING;
    g_starts++;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int32_t spikelink_stop(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_thread_running) { pthread_mutex_unlock(&g_mu); return SL_OK; }
    g_stop = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    pthread_join(g_thread, NULL);
    pthread_mutex_lock(&g_mu);
    g_thread_running = 0;
    if (g_state == SL_STATE_RUNNING) g_state = SL_STATE_STOPPED;
    pthread_mutex_unlock(&g_mu);
    return SL_OK;
}

int32_t spikelink_close(void) {
    spikelink_stop();
    pthread_mutex_lock(&g_mu);
    if (g_fd >= 0) { close(g_fd); g_fd = -1; }
    free_pool(); /* frames still outstanding are lost; releasing them later returns SL_ERR_STATE */
    g_state = SL_STATE_CLOSED;
    pthread_mutex_unlock(&g_mu);
    return SL_OK;
}

int32_t spikelink_release_frame(sl_frame *frame) {
    pthread_mutex_lock(&g_mu);
    int32_t rc = SL_OK;
    if (!g_frames || !frame || frame < g_frames || frame >= g_frames + g_pool) { rc = SL_ERR_STATE; goto out; }
    ptrdiff_t i = frame - g_frames;
    if (!g_in_use[i]) { rc = SL_ERR_INVALID_ARG; goto out; }
    g_in_use[i] = 0;
    g_released++;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int32_t spikelink_get_state(void) {
    pthread_mutex_lock(&g_mu);
    int32_t s = device_present() ? g_state : SL_STATE_DISCONNECTED;
    pthread_mutex_unlock(&g_mu);
    return s;
}

int64_t fake_control(int32_t cmd, int64_t arg) {
    int64_t r = 0;
    pthread_mutex_lock(&g_mu);
    load_env();
    switch (cmd) {
    case FAKE_RESET:
        g_vanish_countdown = -1; g_comeback_ms = 0; g_refuse_open = 0; g_drop_every = 0;
        g_stall_countdown = -1; g_vanished = 0; g_stalled = 0;
        g_delivered = g_released = g_pool_empty = g_dropped = g_starts = g_open_attempts = 0;
        break;
    case FAKE_VANISH_AFTER_BLOCKS: g_vanish_countdown = arg; break;
    case FAKE_COMEBACK_AFTER_MS: g_comeback_ms = arg; break;
    case FAKE_REFUSE_OPEN: g_refuse_open = arg; break;
    case FAKE_DROP_EVERY: g_drop_every = arg; break;
    case FAKE_STALL_AFTER_BLOCKS: g_stall_countdown = arg; break;
    case FAKE_Q_OUTSTANDING: r = g_delivered - g_released; break;
    case FAKE_Q_DELIVERED: r = g_delivered; break;
    case FAKE_Q_RELEASED: r = g_released; break;
    case FAKE_Q_POOL_EMPTY: r = g_pool_empty; break;
    case FAKE_Q_DROPPED: r = g_dropped; break;
    case FAKE_Q_STARTS: r = g_starts; break;
    case FAKE_Q_OPEN_ATTEMPTS: r = g_open_attempts; break;
    case FAKE_Q_SIZEOF_FRAME: r = (int64_t)sizeof(sl_frame); break;
    case FAKE_Q_SIZEOF_PARAMS: r = (int64_t)sizeof(sl_init_params); break;
    case FAKE_Q_OFFSET_FRAME_SIZE: r = (int64_t)offsetof(sl_frame, size); break;
    case FAKE_Q_OFFSET_FRAME_PTS: r = (int64_t)offsetof(sl_frame, pts); break;
    case FAKE_Q_OFFSET_FRAME_TB: r = (int64_t)offsetof(sl_frame, time_base_num); break;
    case FAKE_Q_OFFSET_PARAMS_RATE: r = (int64_t)offsetof(sl_init_params, rate_hz); break;
    case FAKE_Q_OFFSET_PARAMS_PATH: r = (int64_t)offsetof(sl_init_params, file_path); break;
    default: r = -1; break;
    }
    pthread_mutex_unlock(&g_mu);
    return r;
}
