/*
 * fake_spikelink.c -- a stand-in for the vendor's SpikeLink library (spikelinkapi.so), exporting the same
 * symbols with the same structures (spikelinkapi.h), for tests and demos without a camera.
 *
 * Each CreateSpikeLinkInputPython() makes an input object; Init reads SpikeLinkInitParams and the link's own
 * structure behind `opaque`; Open allocates a pool of `buff_size` frames of `cusum` planes (`picture.height`
 * x `picture.width` bits each); Start runs a delivery thread that fills a free pool frame and calls the
 * callback with it, paced against an absolute schedule (t0 + planes delivered / rate, CLOCK_MONOTONIC). A
 * frame stays taken until ReleaseFrame: when every pool frame is out, the frames due meanwhile are lost
 * (counted, and `pts` moves on), as on a camera that cannot wait. Stop joins the thread, Close frees the pool,
 * Fini frees the object.
 *
 * Links:
 *   0x24 dummy: replays SpikeLinkDummyInitParams.fileName in whole frames, at fps (num/den planes/s; 0/1 =
 *        unpaced, a fake-only convenience), from the start again at the end when `repeat` is set, else it
 *        ends (GetState: FAKE_STATE_END_OF_FILE). A short last frame carries the file's remaining planes.
 *   0x20 PCIe: the fake's "device" is a file named by SpikeLinkQSFPInitParams.devName (any other name: Open
 *        fails with FAKE_ERR_NO_DEVICE), streamed in a loop at the mode's rate like a camera that never ends.
 *   0x21 USB, 0x22, 0x23: Init fails with FAKE_ERR_UNSUPPORTED_LINK (their structures are not published).
 *
 * Return codes and GetState values are the fake's own (FAKE_ERR_*, FAKE_STATE_* below): the vendor's are not
 * published, so callers must not read meaning into them beyond zero / non-zero.
 *
 * Emulating the older header's build: with FAKE_HEADER_CUSUM k > 0, Init reads SpikeLinkInitParamsNoCusum (no
 * `cusum` field) and delivers k planes per frame, as a library built from that header would.
 *
 * Faults and queries go through fake_control(cmd, arg) (one device per process: faults apply to every input
 * object; counters are cumulative), or are read once, at the first call, from environment variables for
 * subprocesses (in brackets):
 *   FAKE_VANISH_AFTER_BLOCKS n [FAKE_SPIKELINK_VANISH_AFTER_BLOCKS]: after n more delivered frames the device
 *       disappears: deliveries stop, IsOpen is false, GetState says FAKE_STATE_DISCONNECTED, Open fails.
 *   FAKE_COMEBACK_AFTER_MS ms  [FAKE_SPIKELINK_COMEBACK_MS]: a vanished device is back after ms (negative: never).
 *   FAKE_REFUSE_OPEN k         [FAKE_SPIKELINK_REFUSE_OPEN]: the next k Opens fail (FAKE_ERR_NO_DEVICE).
 *   FAKE_DROP_EVERY n          [FAKE_SPIKELINK_DROP_EVERY]: frames with pts % n == n - 1 are never delivered.
 *   FAKE_STALL_AFTER_BLOCKS n  [FAKE_SPIKELINK_STALL_AFTER_BLOCKS]: after n more frames deliveries stop while
 *       IsOpen stays true (a hung link).
 *   FAKE_HEADER_CUSUM k        [FAKE_SPIKELINK_HEADER_CUSUM]: see above (0: the wrapper's layout).
 *   FAKE_RATE_HZ r             [FAKE_SPIKELINK_RATE_HZ]: the PCIe device's plane rate instead of the mode's.
 *   FAKE_RESET: clears faults, settings and counters.
 * Queries (arg ignored): FAKE_Q_OUTSTANDING (delivered, not released), _DELIVERED, _RELEASED, _POOL_EMPTY
 * (frames lost to a dry pool), _DROPPED, _STARTS, _OPEN_ATTEMPTS, _CREATED, _FINISHED, _BAD_RELEASES
 * (ReleaseFrame of a frame that is not out). Command numbers are mirrored in build.py's FakeCommand.
 */
#define _GNU_SOURCE
#include "spikelinkapi.h"

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAKE_OK                   0
#define FAKE_ERR_INVALID_ARG      (-1)
#define FAKE_ERR_NO_DEVICE        (-2)
#define FAKE_ERR_IO               (-3)
#define FAKE_ERR_STATE            (-4)
#define FAKE_ERR_NO_MEMORY        (-5)
#define FAKE_ERR_UNSUPPORTED_LINK (-6)

#define FAKE_STATE_CREATED      0
#define FAKE_STATE_INITIALIZED  1
#define FAKE_STATE_OPENED       2
#define FAKE_STATE_RUNNING      3
#define FAKE_STATE_STOPPED      4
#define FAKE_STATE_END_OF_FILE  5
#define FAKE_STATE_DISCONNECTED (-1)

#define FAKE_RESET               0
#define FAKE_VANISH_AFTER_BLOCKS 1
#define FAKE_COMEBACK_AFTER_MS   2
#define FAKE_REFUSE_OPEN         3
#define FAKE_DROP_EVERY          4
#define FAKE_STALL_AFTER_BLOCKS  5
#define FAKE_HEADER_CUSUM        6
#define FAKE_RATE_HZ             7
#define FAKE_Q_OUTSTANDING       100
#define FAKE_Q_DELIVERED         101
#define FAKE_Q_RELEASED          102
#define FAKE_Q_POOL_EMPTY        103
#define FAKE_Q_DROPPED           104
#define FAKE_Q_STARTS            105
#define FAKE_Q_OPEN_ATTEMPTS     106
#define FAKE_Q_CREATED           107
#define FAKE_Q_FINISHED          108
#define FAKE_Q_BAD_RELEASES      109

SV_API int64_t fake_control(int32_t cmd, int64_t arg);

typedef struct fake_input {
    int32_t state;
    uint32_t link;
    int32_t width, height; /* delivered frame geometry: picture.width (the decode width) x picture.height */
    int64_t plane_bytes;
    int32_t cusum;
    int32_t pool;
    double rate_hz; /* pacing in planes/s; <= 0: unpaced */
    int repeat;
    char path[4096]; /* dummy: fileName; PCIe: the file the fake device streams (devName) */
    int64_t file_planes;
    int fd;
    int opened;
    SpikeLinkFrameCallback callback;
    SpikeLinkVideoFrame *frames;
    uint8_t *buffers;
    int *in_use;
    pthread_t thread;
    int thread_running;
    int stop;
} fake_input;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;
static int g_cv_ready = 0;

/* the device and its faults (one per process) */
static int g_env_loaded = 0;
static int64_t g_vanish_countdown = -1;
static int64_t g_comeback_ms = 0;
static int64_t g_refuse_open = 0;
static int64_t g_drop_every = 0;
static int64_t g_stall_countdown = -1;
static int64_t g_header_cusum = 0;
static double g_rate_override_hz = 0;
static int g_vanished = 0;
static int g_stalled = 0;
static int64_t g_vanish_ns = 0;

/* counters (cumulative) */
static int64_t g_delivered = 0, g_released = 0, g_pool_empty = 0, g_dropped = 0, g_starts = 0,
               g_open_attempts = 0, g_created = 0, g_finished = 0, g_bad_releases = 0;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec to_timespec(int64_t ns) {
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    return ts;
}

static int64_t env_int(const char *name, int64_t fallback) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    return strtoll(v, NULL, 10);
}

/* Called with g_mu held, by every entry point. */
static void setup_once(void) {
    if (!g_cv_ready) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&g_cv, &attr);
        pthread_condattr_destroy(&attr);
        g_cv_ready = 1;
    }
    if (g_env_loaded) return;
    g_env_loaded = 1;
    g_vanish_countdown = env_int("FAKE_SPIKELINK_VANISH_AFTER_BLOCKS", -1);
    g_comeback_ms = env_int("FAKE_SPIKELINK_COMEBACK_MS", 0);
    g_refuse_open = env_int("FAKE_SPIKELINK_REFUSE_OPEN", 0);
    g_drop_every = env_int("FAKE_SPIKELINK_DROP_EVERY", 0);
    g_stall_countdown = env_int("FAKE_SPIKELINK_STALL_AFTER_BLOCKS", -1);
    g_header_cusum = env_int("FAKE_SPIKELINK_HEADER_CUSUM", 0);
    g_rate_override_hz = (double)env_int("FAKE_SPIKELINK_RATE_HZ", 0);
}

/* Called with g_mu held: a vanished device comes back once its comeback time has passed. */
static int device_present(void) {
    if (g_vanished && g_comeback_ms >= 0 && now_ns() >= g_vanish_ns + g_comeback_ms * 1000000LL) g_vanished = 0;
    return !g_vanished;
}

static int mode_geometry(uint32_t mode, int32_t *w, int32_t *h, double *rate) {
    switch (mode) {
    case SV_MODE_400x250_20K: *w = 400; *h = 250; *rate = 20000.0; return 1;
    case SV_MODE_400x250_40K: *w = 400; *h = 250; *rate = 40000.0; return 1;
    case SV_MODE_1000x1000_20K: *w = 1000; *h = 1000; *rate = 20000.0; return 1;
    case SV_MODE_1000x1000_40K: *w = 1000; *h = 1000; *rate = 40000.0; return 1;
    case SV_MODE_2000x1000_20K: *w = 2000; *h = 1000; *rate = 20000.0; return 1;
    case SV_MODE_2000x1000_40K: *w = 2000; *h = 1000; *rate = 40000.0; return 1;
    default: return 0;
    }
}

/* A NUL-terminated, non-empty string within n bytes, copied into out (size 4096). */
static int copy_name(const char *name, size_t n, char *out) {
    size_t len = strnlen(name, n);
    if (len == 0 || len == n) return 0;
    memcpy(out, name, len);
    out[len] = '\0';
    return 1;
}

static void free_pool(fake_input *in) {
    free(in->frames); free(in->buffers); free(in->in_use);
    in->frames = NULL; in->buffers = NULL; in->in_use = NULL; in->pool = 0;
}

SV_API void *SV_CALLTYPE CreateSpikeLinkInputPython(void) {
    fake_input *in = calloc(1, sizeof(fake_input));
    pthread_mutex_lock(&g_mu);
    setup_once();
    if (in) { in->fd = -1; in->state = FAKE_STATE_CREATED; g_created++; }
    pthread_mutex_unlock(&g_mu);
    return in;
}

SV_API int32_t SV_CALLTYPE Init(void *input, SpikeLinkInitParams *params) {
    fake_input *in = input;
    int32_t mode_w, mode_h, cusum;
    double mode_rate;
    const SVPicture *picture;
    struct stat st;
    int32_t rc = FAKE_OK;
    pthread_mutex_lock(&g_mu);
    setup_once();
    if (!in || !params) { rc = FAKE_ERR_INVALID_ARG; goto out; }
    if (in->thread_running || in->opened) { rc = FAKE_ERR_STATE; goto out; }
    if (g_header_cusum > 0) { /* a build from the older header: no cusum, planes per frame fixed */
        const SpikeLinkInitParamsNoCusum *old = (const SpikeLinkInitParamsNoCusum *)params;
        cusum = (int32_t)g_header_cusum;
        picture = &old->picture;
    } else {
        cusum = params->cusum;
        picture = &params->picture;
    }
    if (params->format != SV_PIX_FMT_GRAY1 || params->buff_size < 1 || cusum < 1 ||
        !mode_geometry(params->mode, &mode_w, &mode_h, &mode_rate)) { rc = FAKE_ERR_INVALID_ARG; goto out; }
    int32_t decode_w = (mode_w + 1023) / 1024 * 1024;
    if (picture->height != mode_h || (picture->width != mode_w && picture->width != decode_w) ||
        picture->format != SV_PIX_FMT_GRAY1) { rc = FAKE_ERR_INVALID_ARG; goto out; }
    in->width = picture->width;
    in->height = picture->height;
    in->plane_bytes = (int64_t)in->width * in->height / 8;
    in->cusum = cusum;
    in->link = params->type;
    if (params->type == SV_LINK_DUMMY) {
        const SpikeLinkDummyInitParams *dummy = params->opaque;
        if (!dummy || !copy_name(dummy->fileName, sizeof(dummy->fileName), in->path) ||
            dummy->fps.num < 0 || dummy->fps.den <= 0) { rc = FAKE_ERR_INVALID_ARG; goto out; }
        if (stat(in->path, &st) != 0) { rc = FAKE_ERR_IO; goto out; }
        if (st.st_size < in->plane_bytes) { rc = FAKE_ERR_INVALID_ARG; goto out; }
        in->rate_hz = (double)dummy->fps.num / (double)dummy->fps.den;
        in->repeat = dummy->repeat;
    } else if (params->type == SV_LINK_PCIE) {
        const SpikeLinkQSFPInitParams *qsfp = params->opaque;
        if (!qsfp || !copy_name((const char *)qsfp->devName, sizeof(qsfp->devName), in->path) ||
            qsfp->channels < 0 || qsfp->channels > 3 || qsfp->channelMode < 0 || qsfp->channelMode > 2) {
            rc = FAKE_ERR_INVALID_ARG; goto out;
        }
        in->rate_hz = g_rate_override_hz > 0 ? g_rate_override_hz : mode_rate;
        in->repeat = 1; /* a camera never ends */
    } else if (params->type >= SV_LINK_USB && params->type <= SV_LINK_ETHERNET) {
        rc = FAKE_ERR_UNSUPPORTED_LINK; goto out;
    } else {
        rc = FAKE_ERR_INVALID_ARG; goto out;
    }
    in->pool = params->buff_size; /* allocated by Open */
    in->state = FAKE_STATE_INITIALIZED;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SV_API void SV_CALLTYPE SetCallbackPython(void *input, SpikeLinkFrameCallback callback) {
    fake_input *in = input;
    if (!in) return;
    pthread_mutex_lock(&g_mu);
    if (!in->thread_running) in->callback = callback;
    pthread_mutex_unlock(&g_mu);
}

SV_API int32_t SV_CALLTYPE Open(void *input) {
    fake_input *in = input;
    struct stat st;
    int32_t rc = FAKE_OK;
    pthread_mutex_lock(&g_mu);
    setup_once();
    g_open_attempts++;
    if (!in || in->state != FAKE_STATE_INITIALIZED || in->opened) { rc = FAKE_ERR_STATE; goto out; }
    if (!device_present()) { rc = FAKE_ERR_NO_DEVICE; goto out; }
    if (g_refuse_open > 0) { g_refuse_open--; rc = FAKE_ERR_NO_DEVICE; goto out; }
    in->fd = open(in->path, O_RDONLY | O_CLOEXEC);
    if (in->fd < 0) { rc = in->link == SV_LINK_PCIE ? FAKE_ERR_NO_DEVICE : FAKE_ERR_IO; goto out; }
    if (fstat(in->fd, &st) != 0 || st.st_size < in->plane_bytes) {
        close(in->fd); in->fd = -1; rc = FAKE_ERR_IO; goto out;
    }
    in->file_planes = st.st_size / in->plane_bytes;
    size_t n = (size_t)in->pool, frame_bytes = (size_t)in->cusum * (size_t)in->plane_bytes;
    in->frames = calloc(n, sizeof(SpikeLinkVideoFrame));
    in->buffers = malloc(n * frame_bytes);
    in->in_use = calloc(n, sizeof(int));
    if (!in->frames || !in->buffers || !in->in_use) {
        int32_t pool = in->pool;
        free_pool(in); in->pool = pool;
        close(in->fd); in->fd = -1; rc = FAKE_ERR_NO_MEMORY; goto out;
    }
    in->opened = 1;
    in->state = FAKE_STATE_OPENED;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static void *delivery_thread(void *arg) {
    fake_input *in = arg;
    pthread_mutex_lock(&g_mu);
    const int64_t cusum = in->cusum;
    const int64_t t0 = now_ns();
    int64_t pts = 0, file_plane = 0, planes_sent = 0;
    while (!in->stop) {
        int64_t n = in->file_planes - file_plane < cusum ? in->file_planes - file_plane : cusum;
        if (in->rate_hz > 0) { /* absolute schedule: a frame is due when its last plane has been read out */
            int64_t due = t0 + (int64_t)((double)(planes_sent + n) * 1e9 / in->rate_hz);
            struct timespec ts = to_timespec(due);
            while (!in->stop && now_ns() < due) pthread_cond_timedwait(&g_cv, &g_mu, &ts);
            if (in->stop) break;
        }
        if (g_vanish_countdown == 0) {
            g_vanish_countdown = -1;
            g_vanished = 1;
            g_vanish_ns = now_ns();
            in->state = FAKE_STATE_DISCONNECTED;
            break;
        }
        if (g_stall_countdown == 0) { g_stall_countdown = -1; g_stalled = 1; }
        if (g_stalled) { /* a hung link: nothing arrives, the device still looks open */
            struct timespec ts = to_timespec(now_ns() + 10000000LL);
            pthread_cond_timedwait(&g_cv, &g_mu, &ts);
            continue;
        }
        int64_t this_pts = pts++;
        int64_t first = file_plane;
        planes_sent += n;
        file_plane += n;
        if (file_plane >= in->file_planes) { /* the end of the file: again from the start, or the end */
            if (!in->repeat) in->stop = 2;
            file_plane = 0;
        }
        if (g_drop_every > 0 && this_pts % g_drop_every == g_drop_every - 1) { g_dropped++; continue; }
        int32_t slot = -1;
        for (int32_t i = 0; i < in->pool; i++) if (!in->in_use[i]) { slot = i; break; }
        if (slot < 0) { g_pool_empty++; continue; }
        uint8_t *buf = in->buffers + (size_t)slot * (size_t)cusum * (size_t)in->plane_bytes;
        size_t want = (size_t)(n * in->plane_bytes);
        if (pread(in->fd, buf, want, (off_t)(first * in->plane_bytes)) != (ssize_t)want) {
            in->state = FAKE_STATE_DISCONNECTED;
            break;
        }
        SpikeLinkVideoFrame *frame = &in->frames[slot];
        memset(frame, 0, sizeof(*frame));
        frame->data[0] = buf;
        frame->linesize[0] = in->width / 8;
        frame->format = (int32_t)SV_PIX_FMT_GRAY1;
        frame->size = (int32_t)want;
        frame->width = in->width;
        frame->height = in->height;
        frame->pts = this_pts;
        frame->dts = this_pts;
        frame->duration = 1;
        frame->time_base.num = cusum; /* one pts step lasts cusum planes */
        frame->time_base.den = in->rate_hz > 0 ? (int64_t)in->rate_hz : 40000;
        in->in_use[slot] = 1;
        g_delivered++;
        if (g_vanish_countdown > 0) g_vanish_countdown--;
        if (g_stall_countdown > 0) g_stall_countdown--;
        SpikeLinkFrameCallback cb = in->callback;
        pthread_mutex_unlock(&g_mu);
        if (cb) cb(frame); /* without the lock: the consumer may release from inside */
        pthread_mutex_lock(&g_mu);
    }
    if (in->stop == 2) in->state = FAKE_STATE_END_OF_FILE;
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

SV_API int32_t SV_CALLTYPE Start(void *input) {
    fake_input *in = input;
    int32_t rc = FAKE_OK;
    pthread_mutex_lock(&g_mu);
    if (!in || !in->opened || in->thread_running) { rc = FAKE_ERR_STATE; goto out; }
    if (!device_present()) { rc = FAKE_ERR_NO_DEVICE; goto out; }
    in->stop = 0;
    g_stalled = 0;
    if (pthread_create(&in->thread, NULL, delivery_thread, in) != 0) { rc = FAKE_ERR_NO_MEMORY; goto out; }
    in->thread_running = 1;
    in->state = FAKE_STATE_RUNNING;
    g_starts++;
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

SV_API int32_t SV_CALLTYPE Stop(void *input) {
    fake_input *in = input;
    if (!in) return FAKE_ERR_INVALID_ARG;
    pthread_mutex_lock(&g_mu);
    if (!in->thread_running) { pthread_mutex_unlock(&g_mu); return FAKE_OK; }
    if (!in->stop) in->stop = 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    pthread_join(in->thread, NULL);
    pthread_mutex_lock(&g_mu);
    in->thread_running = 0;
    if (in->state == FAKE_STATE_RUNNING) in->state = FAKE_STATE_STOPPED;
    pthread_mutex_unlock(&g_mu);
    return FAKE_OK;
}

SV_API int32_t SV_CALLTYPE Close(void *input) {
    fake_input *in = input;
    if (!in) return FAKE_ERR_INVALID_ARG;
    Stop(in);
    pthread_mutex_lock(&g_mu);
    if (in->fd >= 0) { close(in->fd); in->fd = -1; }
    if (in->opened) {
        int32_t pool = in->pool;
        free_pool(in); /* frames still out are gone; releasing one later counts as a bad release */
        in->pool = pool;
        in->opened = 0;
        in->state = FAKE_STATE_INITIALIZED;
    }
    pthread_mutex_unlock(&g_mu);
    return FAKE_OK;
}

SV_API bool SV_CALLTYPE IsOpen(void *input) {
    fake_input *in = input;
    if (!in) return false;
    pthread_mutex_lock(&g_mu);
    bool open = in->opened && device_present();
    pthread_mutex_unlock(&g_mu);
    return open;
}

SV_API int32_t SV_CALLTYPE GetState(void *input) {
    fake_input *in = input;
    if (!in) return FAKE_ERR_INVALID_ARG;
    pthread_mutex_lock(&g_mu);
    int32_t state = device_present() ? in->state : FAKE_STATE_DISCONNECTED;
    pthread_mutex_unlock(&g_mu);
    return state;
}

SV_API void SV_CALLTYPE ReleaseFrame(void *input, void *frame) {
    fake_input *in = input;
    SpikeLinkVideoFrame *f = frame;
    pthread_mutex_lock(&g_mu);
    if (!in || !in->frames || !f || f < in->frames || f >= in->frames + in->pool || !in->in_use[f - in->frames]) {
        g_bad_releases++;
    } else {
        in->in_use[f - in->frames] = 0;
        g_released++;
    }
    pthread_mutex_unlock(&g_mu);
}

SV_API void SV_CALLTYPE Fini(void *input) {
    fake_input *in = input;
    if (!in) return;
    Close(in);
    pthread_mutex_lock(&g_mu);
    g_finished++;
    pthread_mutex_unlock(&g_mu);
    free(in);
}

SV_API int64_t fake_control(int32_t cmd, int64_t arg) {
    int64_t r = 0;
    pthread_mutex_lock(&g_mu);
    setup_once();
    switch (cmd) {
    case FAKE_RESET:
        g_vanish_countdown = -1; g_comeback_ms = 0; g_refuse_open = 0; g_drop_every = 0; g_stall_countdown = -1;
        g_header_cusum = 0; g_rate_override_hz = 0; g_vanished = 0; g_stalled = 0;
        g_delivered = g_released = g_pool_empty = g_dropped = g_starts = g_open_attempts = 0;
        g_created = g_finished = g_bad_releases = 0;
        break;
    case FAKE_VANISH_AFTER_BLOCKS: g_vanish_countdown = arg; break;
    case FAKE_COMEBACK_AFTER_MS: g_comeback_ms = arg; break;
    case FAKE_REFUSE_OPEN: g_refuse_open = arg; break;
    case FAKE_DROP_EVERY: g_drop_every = arg; break;
    case FAKE_STALL_AFTER_BLOCKS: g_stall_countdown = arg; break;
    case FAKE_HEADER_CUSUM: g_header_cusum = arg; break;
    case FAKE_RATE_HZ: g_rate_override_hz = (double)arg; break;
    case FAKE_Q_OUTSTANDING: r = g_delivered - g_released; break;
    case FAKE_Q_DELIVERED: r = g_delivered; break;
    case FAKE_Q_RELEASED: r = g_released; break;
    case FAKE_Q_POOL_EMPTY: r = g_pool_empty; break;
    case FAKE_Q_DROPPED: r = g_dropped; break;
    case FAKE_Q_STARTS: r = g_starts; break;
    case FAKE_Q_OPEN_ATTEMPTS: r = g_open_attempts; break;
    case FAKE_Q_CREATED: r = g_created; break;
    case FAKE_Q_FINISHED: r = g_finished; break;
    case FAKE_Q_BAD_RELEASES: r = g_bad_releases; break;
    default: r = -1; break;
    }
    pthread_mutex_unlock(&g_mu);
    return r;
}
