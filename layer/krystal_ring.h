/* The shared-memory ring between the Krystal Vulkan layer (one writer per process) and any number of
 * readers (gpu_telemetry). Layout is fixed, little endian, 8-byte aligned; readers check magic,
 * version and sizes. Mirrored in src/krystal/gpu/vkring.py. */
#ifndef KRYSTAL_RING_H
#define KRYSTAL_RING_H

#include <stdint.h>

#define KRYSTAL_RING_MAGIC 0x31304b5659524bULL /* "KRYVK01" */
#define KRYSTAL_RING_VERSION 2u /* 2: mesh_draws, trace_rays, rays */
#define KRYSTAL_RING_CAPACITY 256u
#define KRYSTAL_RING_NAME_LEN 64
#define KRYSTAL_RING_PREFIX "/krystal-vk-" /* shm name: /krystal-vk-<pid>-<app> */

/* One frame: present to present, or one submit for programs that never present. */
typedef struct KrystalFrame {
    uint64_t seq;              /* seqlock: odd while the writer fills the slot, 2*(index+1) when done */
    uint64_t frame_index;      /* 0, 1, 2, ... */
    uint64_t end_ns;           /* CLOCK_MONOTONIC at the present (or submit) that closed the frame */
    uint64_t frame_time_ns;    /* since the previous frame closed; 0 for the first */
    uint64_t draw_calls;       /* every vkCmdDraw* recorded in the submitted command buffers (mesh-task
                                  and transform-feedback byte-count draws included) */
    uint64_t indirect_draws;   /* of which indirect: their vertex counts are on the GPU, unknown here */
    uint64_t vertices;         /* vertexCount * instanceCount of direct non-indexed draws */
    uint64_t indices;          /* indexCount * instanceCount of direct indexed draws */
    uint64_t instances;        /* instanceCount summed over direct draws */
    uint64_t dispatches;       /* vkCmdDispatch* */
    uint64_t indirect_dispatches;
    uint64_t workgroups;       /* x*y*z of direct dispatches */
    uint64_t graphics_binds;   /* vkCmdBindPipeline by bind point */
    uint64_t compute_binds;
    uint64_t submits;          /* queue submits in the frame */
    uint64_t mesh_draws;       /* of draw_calls: vkCmdDrawMeshTasks* (EXT and NV, indirect included) */
    uint64_t trace_rays;       /* vkCmdTraceRays* (KHR, NV, indirect): not draws, not dispatches */
    uint64_t rays;             /* width*height*depth of direct trace-rays calls */
    uint64_t reserved[1];
} KrystalFrame;

typedef struct KrystalRingHeader {
    uint64_t magic;
    uint32_t version;
    uint32_t slot_size;        /* sizeof(KrystalFrame) */
    uint32_t capacity;         /* slots */
    uint32_t pid;
    char app_name[KRYSTAL_RING_NAME_LEN]; /* VkApplicationInfo::pApplicationName, NUL-terminated */
    uint64_t written;          /* frames written so far (release store after each) */
    uint64_t overwritten;      /* frames lost to a full ring: written - capacity, when positive */
    uint64_t presenting;       /* 1 once a present was seen: frames are present to present */
    uint64_t start_ticks;      /* field 22 of /proc/<pid>/stat (start time in clock ticks after boot):
                                  a reader tells the writer from a later process with the same pid */
    uint32_t vendor_id;        /* VkPhysicalDeviceProperties of the last device created, 0 before */
    uint32_t device_id;
    uint64_t reserved[3];
} KrystalRingHeader;

#endif
