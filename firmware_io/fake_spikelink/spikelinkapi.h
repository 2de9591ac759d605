/*
 * spikelinkapi.h -- the SpikeLink camera SDK's C interface, written for this project from the published facts
 * (spike-camera-facts.md, "The camera SDK (SpikeLink): the vendor ABI as published"). The vendor's own header is
 * not redistributable and is not copied here; this file states the same ABI: the exported function names and
 * signatures, the structures field by field with natural alignment, and the codes.
 *
 * Where the vendor's header and SpikeCV's ctypes wrapper differ, this follows the wrapper (what ran against
 * shipping cameras): SpikeLinkInitParams has `cusum`. The older header's layout, without it, is declared too
 * (SpikeLinkInitParamsNoCusum) so that a library built from that header can be bound explicitly; nothing can
 * tell the two apart from the outside.
 *
 * firmware_io/spikelink.py mirrors every structure with ctypes; tests compile a small program against this
 * header and compare every field's offset and every structure's size with the mirror.
 *
 * What the facts leave open, and this header therefore does not state: the USB link's init structure (and the
 * Thunderbolt and Ethernet ones), the meaning of GetState()'s values, and the error codes behind a non-zero
 * return of Init/Open/Start.
 */
#ifndef SPIKELINKAPI_H
#define SPIKELINKAPI_H

#include <stdbool.h>
#include <stdint.h>

#ifdef _MSC_VER
#define SV_CALLTYPE __stdcall
#define SV_API __declspec(dllexport)
#else
#define SV_CALLTYPE
#define SV_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Link types (SpikeLinkInitParams.type). */
#define SV_LINK_PCIE        0x20
#define SV_LINK_USB         0x21
#define SV_LINK_THUNDERBOLT 0x22
#define SV_LINK_ETHERNET    0x23
#define SV_LINK_DUMMY       0x24 /* the library replays a file itself (SpikeLinkDummyInitParams) */

/* Sensor modes (SpikeLinkInitParams.mode): geometry and plane rate. */
#define SV_MODE_400x250_20K   0x1000
#define SV_MODE_400x250_40K   0x1001
#define SV_MODE_1000x1000_20K 0x2000
#define SV_MODE_1000x1000_40K 0x2001
#define SV_MODE_2000x1000_20K 0x3000
#define SV_MODE_2000x1000_40K 0x3001
#define SV_MODE_UNKNOWN       0x8000

/* Pixel formats. */
#define SV_PIX_FMT_GRAY1 0x00010000u /* 1 bit per pixel, LSB first */
#define SV_PIX_FMT_GRAY8 0x00010001u
#define SV_PIX_FMT_ARGB  0x00010008u

typedef struct SVRational {
    int64_t num;
    int64_t den;
} SVRational;

typedef struct SVPicture {
    int32_t width; /* the decode width: 1024 for the 1000x1000 camera */
    int32_t height;
    uint32_t format;
    SVRational fps;
    SVRational time_base;
} SVPicture;

typedef struct SpikeLinkInitParams {
    void *opaque;      /* the link's own structure: SpikeLinkQSFPInitParams (PCIe) or SpikeLinkDummyInitParams */
    uint32_t type;     /* SV_LINK_* */
    uint32_t mode;     /* SV_MODE_* */
    uint32_t format;   /* SV_PIX_FMT_* */
    int32_t buff_size; /* frames in the library's pool */
    int32_t cusum;     /* planes per delivered frame (SpikeCV's wrapper; absent from the older header) */
    SVPicture picture;
} SpikeLinkInitParams;

/* The older header's copy of the same structure: no `cusum`. */
typedef struct SpikeLinkInitParamsNoCusum {
    void *opaque;
    uint32_t type;
    uint32_t mode;
    uint32_t format;
    int32_t buff_size;
    SVPicture picture;
} SpikeLinkInitParamsNoCusum;

typedef struct SpikeLinkQSFPInitParams { /* PCIe */
    int8_t devName[256];
    int32_t channels;    /* 0..3 */
    int32_t channelMode; /* 0 read, 1 send, 2 both */
} SpikeLinkQSFPInitParams;

typedef struct SpikeLinkDummyInitParams { /* link 0x24 */
    char fileName[256];
    SVRational fps;
    int64_t duration;
    int32_t skip;
    int32_t start;
    int32_t end;
    bool repeat;
} SpikeLinkDummyInitParams;

typedef struct SpikeLinkVideoFrame {
    uint8_t *data[3];    /* data[0]: `size` bytes = cusum planes of height x width bits, LSB first */
    int32_t linesize[3];
    int32_t format;
    int32_t size;
    int32_t width;
    int32_t height;
    int64_t pts;         /* frame counter: pts * cusum is the index of the frame's first plane */
    int64_t dts;
    int64_t duration;
    SVRational time_base;
    void *opaque;
} SpikeLinkVideoFrame;

typedef void (*SpikeLinkFrameCallback)(void *frame); /* frame: a SpikeLinkVideoFrame* */

SV_API void *SV_CALLTYPE CreateSpikeLinkInputPython(void);
SV_API int32_t SV_CALLTYPE Init(void *input, SpikeLinkInitParams *params);
SV_API void SV_CALLTYPE SetCallbackPython(void *input, SpikeLinkFrameCallback callback);
SV_API int32_t SV_CALLTYPE Open(void *input);
SV_API bool SV_CALLTYPE IsOpen(void *input);
SV_API int32_t SV_CALLTYPE Close(void *input);
SV_API int32_t SV_CALLTYPE Start(void *input);
SV_API int32_t SV_CALLTYPE Stop(void *input);
SV_API int32_t SV_CALLTYPE GetState(void *input);
SV_API void SV_CALLTYPE ReleaseFrame(void *input, void *frame);
SV_API void SV_CALLTYPE Fini(void *input);

#ifdef __cplusplus
}
#endif

#endif /* SPIKELINKAPI_H */
