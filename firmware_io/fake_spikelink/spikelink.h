/*
 * spikelink.h -- the SpikeLink camera SDK interface as this project models it.
 *
 * The vendor header is not redistributable and not available here, so this header is written
 * from the published description of the SDK (see spike-camera-facts.md, "The camera SDK"):
 * init(params*), setcallback(cb), open(), start(), stop(), close(), releaseFrame(frame*),
 * getState(); init params carry the link type, sensor mode, pixel format, buffer pool size and
 * planes per delivered block; the callback receives a frame struct (data pointers, line sizes,
 * size = W*H/8*cusum bytes, width, height, pts = block index, time base) that the consumer must
 * release. Field order, integer widths, symbol names and error codes are OUR choices; the ctypes
 * mirror in firmware_io/spikelink.py must match this file, and a real vendor build may need both
 * adapted (symbol names are collected in one table there).
 *
 * Plane data: each block holds `cusum` planes, each W*H/8 bytes, in the same camera order as .dat
 * files (LSB-first pixels, rows stored bottom-up).
 *
 * Threading: the SDK calls the callback on its own thread; the consumer may call
 * spikelink_release_frame from inside the callback or later from any thread.
 */
#ifndef SPIKELINK_H
#define SPIKELINK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Link types. */
#define SL_LINK_PCIE        0x20
#define SL_LINK_USB3        0x21
#define SL_LINK_THUNDERBOLT 0x22
#define SL_LINK_ETHERNET    0x23
#define SL_LINK_DUMMY_FILE  0x24  /* replay a .dat file (file_path) */

/* Sensor modes: geometry and native plane rate. */
#define SL_MODE_400x250_20K   0x1000
#define SL_MODE_400x250_40K   0x1001
#define SL_MODE_1000x1000_20K 0x2000
#define SL_MODE_1000x1000_40K 0x2001
#define SL_MODE_2000x1000_20K 0x3000
#define SL_MODE_2000x1000_40K 0x3001

/* Pixel formats. */
#define SL_FORMAT_GRAY1 0x01  /* 1 bit per pixel, 8 pixels per byte */

/* Device / session states returned by spikelink_get_state. */
#define SL_STATE_CLOSED       0
#define SL_STATE_INITIALIZED  1
#define SL_STATE_OPENED       2
#define SL_STATE_RUNNING      3
#define SL_STATE_STOPPED      4
#define SL_STATE_END_OF_FILE  5   /* dummy link, no loop: the file has been delivered */
#define SL_STATE_DISCONNECTED (-1) /* the device went away; stop/close, then init/open/start again */

/* Return codes (0 = success). */
#define SL_OK              0
#define SL_ERR_INVALID_ARG (-1)
#define SL_ERR_NO_DEVICE   (-2)
#define SL_ERR_IO          (-3)
#define SL_ERR_STATE       (-4)
#define SL_ERR_NO_MEMORY   (-5)

#define SL_MAX_DATA_POINTERS 4

typedef struct sl_init_params {
    int32_t link_type;        /* SL_LINK_* */
    int32_t mode;             /* SL_MODE_* */
    int32_t format;           /* SL_FORMAT_* */
    int32_t buffer_pool_size; /* frames the SDK may have outstanding (delivered, not released) */
    int32_t planes_per_block; /* "cusum": planes per delivered frame */
    int32_t loop;             /* dummy link: 1 = replay from the start at end of file */
    double rate_hz;           /* dummy link pacing in planes/s; 0 = the mode's rate; < 0 = unpaced */
    const char *file_path;    /* dummy link: the .dat file */
} sl_init_params;

typedef struct sl_frame {
    uint8_t *data[SL_MAX_DATA_POINTERS]; /* data[0]: cusum planes back to back; others NULL */
    int32_t linesize[SL_MAX_DATA_POINTERS]; /* linesize[0] = bytes per plane row = W/8 */
    int64_t size;                        /* bytes in data[0] = W*H/8*cusum */
    int32_t width;
    int32_t height;
    int32_t cusum;                       /* planes in this frame */
    int32_t format;                      /* SL_FORMAT_* */
    int64_t pts;                         /* block index since start() */
    int32_t time_base_num;               /* one pts step lasts num/den seconds */
    int32_t time_base_den;
} sl_frame;

typedef void (*sl_frame_callback)(sl_frame *frame);

int32_t spikelink_init(const sl_init_params *params);
int32_t spikelink_set_callback(sl_frame_callback callback);
int32_t spikelink_open(void);
int32_t spikelink_start(void);
int32_t spikelink_stop(void);
int32_t spikelink_close(void);
int32_t spikelink_release_frame(sl_frame *frame);
int32_t spikelink_get_state(void);

#ifdef __cplusplus
}
#endif

#endif /* SPIKELINK_H */
