/* VK_LAYER_KRYSTAL_draws: counts what a Vulkan application draws and dispatches, per frame, into a
 * shared-memory ring that gpu_telemetry reads (krystal_ring.h).
 *
 * Dispatch-table chaining as the loader's layer interface describes (instance and device); every
 * function the layer does not intercept goes straight to the next layer. The draw path does a
 * lock-free hash lookup of the command buffer and adds to counters it owns (a command buffer is
 * recorded by one thread at a time, as Vulkan requires); nothing on it allocates or locks. Counts
 * move into the frame at submit time, and a frame is written to the ring at present (or at each
 * submit, for programs that never present). */
#define _GNU_SOURCE
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

#include "krystal_ring.h"

#define LAYER_NAME "VK_LAYER_KRYSTAL_draws"
#define EXPORT __attribute__((visibility("default")))
#define MAX_INSTANCES 16
#define MAX_DEVICES 16
#define CB_SLOTS 16384 /* power of two */
#define TOMBSTONE ((uintptr_t)1)

static void *dispatch_key(const void *handle) { return *(void *const *)handle; }

/* ---- instance and device tables ------------------------------------------------------------- */
typedef struct InstanceData {
    _Atomic(void *) key;
    VkInstance instance;
    PFN_vkGetInstanceProcAddr gipa;
    PFN_vkDestroyInstance DestroyInstance;
    PFN_vkEnumerateDeviceExtensionProperties EnumerateDeviceExtensionProperties;
} InstanceData;

typedef struct DeviceData {
    _Atomic(void *) key;
    VkDevice device;
    PFN_vkGetDeviceProcAddr gdpa;
    PFN_vkDestroyDevice DestroyDevice;
    PFN_vkAllocateCommandBuffers AllocateCommandBuffers;
    PFN_vkFreeCommandBuffers FreeCommandBuffers;
    PFN_vkDestroyCommandPool DestroyCommandPool;
    PFN_vkResetCommandPool ResetCommandPool;
    PFN_vkBeginCommandBuffer BeginCommandBuffer;
    PFN_vkCmdDraw CmdDraw;
    PFN_vkCmdDrawIndexed CmdDrawIndexed;
    PFN_vkCmdDrawIndirect CmdDrawIndirect;
    PFN_vkCmdDrawIndexedIndirect CmdDrawIndexedIndirect;
    PFN_vkCmdDrawIndirectCount CmdDrawIndirectCount;
    PFN_vkCmdDrawIndexedIndirectCount CmdDrawIndexedIndirectCount;
    PFN_vkCmdDrawMultiEXT CmdDrawMultiEXT;
    PFN_vkCmdDrawMultiIndexedEXT CmdDrawMultiIndexedEXT;
    PFN_vkCmdDispatch CmdDispatch;
    PFN_vkCmdDispatchBase CmdDispatchBase;
    PFN_vkCmdDispatchIndirect CmdDispatchIndirect;
    PFN_vkCmdDrawMeshTasksEXT CmdDrawMeshTasksEXT;
    PFN_vkCmdDrawMeshTasksIndirectEXT CmdDrawMeshTasksIndirectEXT;
    PFN_vkCmdDrawMeshTasksIndirectCountEXT CmdDrawMeshTasksIndirectCountEXT;
    PFN_vkCmdDrawMeshTasksNV CmdDrawMeshTasksNV;
    PFN_vkCmdDrawMeshTasksIndirectNV CmdDrawMeshTasksIndirectNV;
    PFN_vkCmdDrawMeshTasksIndirectCountNV CmdDrawMeshTasksIndirectCountNV;
    PFN_vkCmdDrawIndirectByteCountEXT CmdDrawIndirectByteCountEXT;
    PFN_vkCmdTraceRaysKHR CmdTraceRaysKHR;
    PFN_vkCmdTraceRaysNV CmdTraceRaysNV;
    PFN_vkCmdTraceRaysIndirectKHR CmdTraceRaysIndirectKHR;
    PFN_vkCmdTraceRaysIndirect2KHR CmdTraceRaysIndirect2KHR;
    PFN_vkCmdBindPipeline CmdBindPipeline;
    PFN_vkCmdExecuteCommands CmdExecuteCommands;
    PFN_vkQueueSubmit QueueSubmit;
    PFN_vkQueueSubmit2 QueueSubmit2;
    PFN_vkQueuePresentKHR QueuePresentKHR;
} DeviceData;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* creation and destruction only */
static InstanceData g_instances[MAX_INSTANCES];
static DeviceData g_devices[MAX_DEVICES];

static InstanceData *find_instance(const void *handle) {
    void *key = dispatch_key(handle);
    for (int i = 0; i < MAX_INSTANCES; i++)
        if (atomic_load_explicit(&g_instances[i].key, memory_order_acquire) == key) return &g_instances[i];
    return NULL;
}

static DeviceData *find_device(const void *handle) {
    void *key = dispatch_key(handle);
    for (int i = 0; i < MAX_DEVICES; i++)
        if (atomic_load_explicit(&g_devices[i].key, memory_order_acquire) == key) return &g_devices[i];
    return NULL;
}

/* ---- command buffers: counters recorded per buffer ------------------------------------------ */
typedef struct Counts { /* the frame's fields in order, up to submits (which the queue counts) */
    uint64_t draw_calls, indirect_draws, vertices, indices, instances;
    uint64_t dispatches, indirect_dispatches, workgroups, graphics_binds, compute_binds;
    uint64_t mesh_draws, trace_rays, rays;
} Counts;
#define NCOUNTS ((int)(sizeof(Counts) / sizeof(uint64_t)))

typedef struct CbSlot {
    _Atomic uintptr_t key; /* VkCommandBuffer, 0 free, TOMBSTONE removed */
    DeviceData *dev;
    VkCommandPool pool;
    Counts counts;
} CbSlot;

static CbSlot g_cbs[CB_SLOTS];

static size_t cb_hash(uintptr_t key) { return (size_t)((key >> 4) * 0x9E3779B97F4A7C15ULL) & (CB_SLOTS - 1); }

static CbSlot *find_cb(VkCommandBuffer cb) {
    uintptr_t key = (uintptr_t)cb;
    size_t i = cb_hash(key);
    for (size_t n = 0; n < CB_SLOTS; n++, i = (i + 1) & (CB_SLOTS - 1)) {
        uintptr_t k = atomic_load_explicit(&g_cbs[i].key, memory_order_acquire);
        if (k == key) return &g_cbs[i];
        if (k == 0) return NULL;
    }
    return NULL;
}

static void add_cb(VkCommandBuffer cb, DeviceData *dev, VkCommandPool pool) { /* under g_lock */
    uintptr_t key = (uintptr_t)cb;
    size_t i = cb_hash(key);
    CbSlot *reuse = NULL;
    for (size_t n = 0; n < CB_SLOTS; n++, i = (i + 1) & (CB_SLOTS - 1)) {
        uintptr_t k = atomic_load_explicit(&g_cbs[i].key, memory_order_relaxed);
        if (k == key) { reuse = &g_cbs[i]; break; }
        if (k == TOMBSTONE && reuse == NULL) reuse = &g_cbs[i];
        if (k == 0) { if (reuse == NULL) reuse = &g_cbs[i]; break; }
    }
    if (reuse == NULL) return; /* table full: this buffer is not counted, never broken */
    reuse->dev = dev;
    reuse->pool = pool;
    memset(&reuse->counts, 0, sizeof reuse->counts);
    atomic_store_explicit(&reuse->key, key, memory_order_release);
}

static void remove_cb(VkCommandBuffer cb) { /* under g_lock */
    CbSlot *s = find_cb(cb);
    if (s) atomic_store_explicit(&s->key, TOMBSTONE, memory_order_release);
}

/* ---- the ring -------------------------------------------------------------------------------- */
typedef struct Ring {
    KrystalRingHeader header;
    KrystalFrame slots[KRYSTAL_RING_CAPACITY];
} Ring;

static Ring *g_ring;
static char g_ring_name[128];
static int g_instance_count;
static pthread_mutex_t g_ring_lock = PTHREAD_MUTEX_INITIALIZER; /* frame close: submit/present */
static _Atomic uint64_t g_frame[NCOUNTS + 1]; /* Counts fields, then submits */
#define SUBMITS NCOUNTS
static uint64_t g_last_close_ns;
static _Atomic int g_presenting;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t start_ticks(void) { /* 0 when /proc is unreadable: readers then trust the pid alone */
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return 0;
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void open_ring(const char *app) { /* under g_lock, at the first instance */
    char clean[KRYSTAL_RING_NAME_LEN] = "vulkan-app";
    if (app && *app) {
        size_t j = 0;
        for (size_t i = 0; app[i] && j + 1 < sizeof clean; i++)
            clean[j++] = (char)(isalnum((unsigned char)app[i]) || app[i] == '-' || app[i] == '_' ? app[i] : '_');
        clean[j] = 0;
    }
    snprintf(g_ring_name, sizeof g_ring_name, KRYSTAL_RING_PREFIX "%d-%s", (int)getpid(), clean);
    /* a ring left by an earlier process with this pid is unlinked, never truncated: a reader still
     * mapping it keeps its pages (truncating would make its reads fault) */
    shm_unlink(g_ring_name);
    int fd = shm_open(g_ring_name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) return; /* no ring: the application still runs, uncounted */
    if (ftruncate(fd, sizeof(Ring)) != 0) { close(fd); shm_unlink(g_ring_name); return; }
    void *p = mmap(NULL, sizeof(Ring), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) { shm_unlink(g_ring_name); return; }
    Ring *r = p;
    memset(r, 0, sizeof *r);
    r->header.version = KRYSTAL_RING_VERSION;
    r->header.slot_size = sizeof(KrystalFrame);
    r->header.capacity = KRYSTAL_RING_CAPACITY;
    r->header.pid = (uint32_t)getpid();
    r->header.start_ticks = start_ticks();
    strncpy(r->header.app_name, app && *app ? app : "vulkan-app", KRYSTAL_RING_NAME_LEN - 1);
    atomic_thread_fence(memory_order_release);
    r->header.magic = KRYSTAL_RING_MAGIC; /* last: readers ignore a ring being set up */
    g_ring = r;
    g_last_close_ns = 0;
}

static void close_ring(void) { /* under g_lock, at the last instance */
    if (!g_ring) return;
    munmap(g_ring, sizeof(Ring));
    shm_unlink(g_ring_name);
    g_ring = NULL;
}

static void close_frame(void) {
    pthread_mutex_lock(&g_ring_lock);
    Ring *r = g_ring;
    if (r) {
        uint64_t v[NCOUNTS + 1];
        for (int i = 0; i <= NCOUNTS; i++) v[i] = atomic_exchange_explicit(&g_frame[i], 0, memory_order_relaxed);
        uint64_t n = r->header.written, t = now_ns();
        KrystalFrame *s = &r->slots[n % KRYSTAL_RING_CAPACITY];
        _Atomic uint64_t *seq = (_Atomic uint64_t *)&s->seq;
        atomic_store_explicit(seq, 2 * n + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        s->frame_index = n;
        s->end_ns = t;
        s->frame_time_ns = g_last_close_ns ? t - g_last_close_ns : 0;
        s->draw_calls = v[0];
        s->indirect_draws = v[1];
        s->vertices = v[2];
        s->indices = v[3];
        s->instances = v[4];
        s->dispatches = v[5];
        s->indirect_dispatches = v[6];
        s->workgroups = v[7];
        s->graphics_binds = v[8];
        s->compute_binds = v[9];
        s->mesh_draws = v[10];
        s->trace_rays = v[11];
        s->rays = v[12];
        s->submits = v[SUBMITS];
        atomic_store_explicit(seq, 2 * n + 2, memory_order_release);
        r->header.overwritten = n + 1 > KRYSTAL_RING_CAPACITY ? n + 1 - KRYSTAL_RING_CAPACITY : 0;
        r->header.presenting = (uint64_t)atomic_load(&g_presenting);
        atomic_store_explicit((_Atomic uint64_t *)&r->header.written, n + 1, memory_order_release);
        g_last_close_ns = t;
    }
    pthread_mutex_unlock(&g_ring_lock);
}

static void submit_cb(VkCommandBuffer cb) {
    CbSlot *s = find_cb(cb);
    if (!s) return;
    const uint64_t *c = (const uint64_t *)&s->counts;
    for (int i = 0; i < NCOUNTS; i++)
        if (c[i]) atomic_fetch_add_explicit(&g_frame[i], c[i], memory_order_relaxed);
}

/* ---- draw path ------------------------------------------------------------------------------- */
#define CB_OR_RETURN(cb, fn, ...)                       \
    CbSlot *s = find_cb(cb);                            \
    DeviceData *d = s ? s->dev : find_device(cb);       \
    if (!d || !d->fn) return;                           \
    d->fn(__VA_ARGS__)

static VKAPI_ATTR void VKAPI_CALL k_CmdDraw(VkCommandBuffer cb, uint32_t vc, uint32_t ic, uint32_t fv, uint32_t fi) {
    CB_OR_RETURN(cb, CmdDraw, cb, vc, ic, fv, fi);
    if (s) { s->counts.draw_calls++; s->counts.vertices += (uint64_t)vc * ic; s->counts.instances += ic; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawIndexed(VkCommandBuffer cb, uint32_t n, uint32_t ic, uint32_t fi, int32_t vo,
                                                   uint32_t fin) {
    CB_OR_RETURN(cb, CmdDrawIndexed, cb, n, ic, fi, vo, fin);
    if (s) { s->counts.draw_calls++; s->counts.indices += (uint64_t)n * ic; s->counts.instances += ic; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawIndirect(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o, uint32_t dc,
                                                    uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawIndirect, cb, b, o, dc, st);
    if (s) { s->counts.draw_calls += dc; s->counts.indirect_draws += dc; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawIndexedIndirect(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o, uint32_t dc,
                                                           uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawIndexedIndirect, cb, b, o, dc, st);
    if (s) { s->counts.draw_calls += dc; s->counts.indirect_draws += dc; }
}

/* The draw count lives in a GPU buffer: counted as one draw of unknown size (maxDrawCount is a bound). */
static VKAPI_ATTR void VKAPI_CALL k_CmdDrawIndirectCount(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o, VkBuffer cbuf,
                                                         VkDeviceSize co, uint32_t mx, uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawIndirectCount, cb, b, o, cbuf, co, mx, st);
    if (s) { s->counts.draw_calls++; s->counts.indirect_draws++; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawIndexedIndirectCount(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o,
                                                                VkBuffer cbuf, VkDeviceSize co, uint32_t mx,
                                                                uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawIndexedIndirectCount, cb, b, o, cbuf, co, mx, st);
    if (s) { s->counts.draw_calls++; s->counts.indirect_draws++; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMultiEXT(VkCommandBuffer cb, uint32_t dc, const VkMultiDrawInfoEXT *info,
                                                    uint32_t ic, uint32_t fi, uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawMultiEXT, cb, dc, info, ic, fi, st);
    if (!s) return;
    const char *p = (const char *)info;
    for (uint32_t i = 0; i < dc; i++, p += st) s->counts.vertices += (uint64_t)((const VkMultiDrawInfoEXT *)p)->vertexCount * ic;
    s->counts.draw_calls += dc;
    s->counts.instances += (uint64_t)dc * ic;
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMultiIndexedEXT(VkCommandBuffer cb, uint32_t dc,
                                                           const VkMultiDrawIndexedInfoEXT *info, uint32_t ic,
                                                           uint32_t fi, uint32_t st, const int32_t *vo) {
    CB_OR_RETURN(cb, CmdDrawMultiIndexedEXT, cb, dc, info, ic, fi, st, vo);
    if (!s) return;
    const char *p = (const char *)info;
    for (uint32_t i = 0; i < dc; i++, p += st) s->counts.indices += (uint64_t)((const VkMultiDrawIndexedInfoEXT *)p)->indexCount * ic;
    s->counts.draw_calls += dc;
    s->counts.instances += (uint64_t)dc * ic;
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDispatch(VkCommandBuffer cb, uint32_t x, uint32_t y, uint32_t z) {
    CB_OR_RETURN(cb, CmdDispatch, cb, x, y, z);
    if (s) { s->counts.dispatches++; s->counts.workgroups += (uint64_t)x * y * z; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDispatchBase(VkCommandBuffer cb, uint32_t bx, uint32_t by, uint32_t bz,
                                                    uint32_t x, uint32_t y, uint32_t z) {
    CB_OR_RETURN(cb, CmdDispatchBase, cb, bx, by, bz, x, y, z);
    if (s) { s->counts.dispatches++; s->counts.workgroups += (uint64_t)x * y * z; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDispatchIndirect(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o) {
    CB_OR_RETURN(cb, CmdDispatchIndirect, cb, b, o);
    if (s) { s->counts.dispatches++; s->counts.indirect_dispatches++; }
}

/* Mesh-task draws are draws (draw_calls, the indirect ones indirect_draws) and mesh_draws says which:
 * their task counts are work groups, not vertices. A count-buffer draw is one draw of unknown size. */
static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMeshTasksEXT(VkCommandBuffer cb, uint32_t x, uint32_t y, uint32_t z) {
    CB_OR_RETURN(cb, CmdDrawMeshTasksEXT, cb, x, y, z);
    if (s) { s->counts.draw_calls++; s->counts.mesh_draws++; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMeshTasksIndirectEXT(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o,
                                                                uint32_t dc, uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawMeshTasksIndirectEXT, cb, b, o, dc, st);
    if (s) { s->counts.draw_calls += dc; s->counts.mesh_draws += dc; s->counts.indirect_draws += dc; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMeshTasksIndirectCountEXT(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o,
                                                                     VkBuffer cbuf, VkDeviceSize co, uint32_t mx,
                                                                     uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawMeshTasksIndirectCountEXT, cb, b, o, cbuf, co, mx, st);
    if (s) { s->counts.draw_calls++; s->counts.mesh_draws++; s->counts.indirect_draws++; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMeshTasksNV(VkCommandBuffer cb, uint32_t n, uint32_t first) {
    CB_OR_RETURN(cb, CmdDrawMeshTasksNV, cb, n, first);
    if (s) { s->counts.draw_calls++; s->counts.mesh_draws++; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMeshTasksIndirectNV(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o,
                                                               uint32_t dc, uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawMeshTasksIndirectNV, cb, b, o, dc, st);
    if (s) { s->counts.draw_calls += dc; s->counts.mesh_draws += dc; s->counts.indirect_draws += dc; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdDrawMeshTasksIndirectCountNV(VkCommandBuffer cb, VkBuffer b, VkDeviceSize o,
                                                                    VkBuffer cbuf, VkDeviceSize co, uint32_t mx,
                                                                    uint32_t st) {
    CB_OR_RETURN(cb, CmdDrawMeshTasksIndirectCountNV, cb, b, o, cbuf, co, mx, st);
    if (s) { s->counts.draw_calls++; s->counts.mesh_draws++; s->counts.indirect_draws++; }
}

/* A transform-feedback draw: its vertex count is a byte count in a GPU buffer, unknown here. */
static VKAPI_ATTR void VKAPI_CALL k_CmdDrawIndirectByteCountEXT(VkCommandBuffer cb, uint32_t ic, uint32_t fi,
                                                                VkBuffer cbuf, VkDeviceSize cbo, uint32_t co,
                                                                uint32_t stride) {
    CB_OR_RETURN(cb, CmdDrawIndirectByteCountEXT, cb, ic, fi, cbuf, cbo, co, stride);
    if (s) { s->counts.draw_calls++; s->counts.indirect_draws++; s->counts.instances += ic; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdTraceRaysKHR(VkCommandBuffer cb, const VkStridedDeviceAddressRegionKHR *rg,
                                                    const VkStridedDeviceAddressRegionKHR *miss,
                                                    const VkStridedDeviceAddressRegionKHR *hit,
                                                    const VkStridedDeviceAddressRegionKHR *call, uint32_t w, uint32_t h,
                                                    uint32_t dp) {
    CB_OR_RETURN(cb, CmdTraceRaysKHR, cb, rg, miss, hit, call, w, h, dp);
    if (s) { s->counts.trace_rays++; s->counts.rays += (uint64_t)w * h * dp; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdTraceRaysNV(VkCommandBuffer cb, VkBuffer rg, VkDeviceSize rgo, VkBuffer miss,
                                                   VkDeviceSize misso, VkDeviceSize missst, VkBuffer hit,
                                                   VkDeviceSize hito, VkDeviceSize hitst, VkBuffer call,
                                                   VkDeviceSize callo, VkDeviceSize callst, uint32_t w, uint32_t h,
                                                   uint32_t dp) {
    CB_OR_RETURN(cb, CmdTraceRaysNV, cb, rg, rgo, miss, misso, missst, hit, hito, hitst, call, callo, callst, w, h, dp);
    if (s) { s->counts.trace_rays++; s->counts.rays += (uint64_t)w * h * dp; }
}

static VKAPI_ATTR void VKAPI_CALL k_CmdTraceRaysIndirectKHR(VkCommandBuffer cb, const VkStridedDeviceAddressRegionKHR *rg,
                                                            const VkStridedDeviceAddressRegionKHR *miss,
                                                            const VkStridedDeviceAddressRegionKHR *hit,
                                                            const VkStridedDeviceAddressRegionKHR *call,
                                                            VkDeviceAddress addr) {
    CB_OR_RETURN(cb, CmdTraceRaysIndirectKHR, cb, rg, miss, hit, call, addr);
    if (s) s->counts.trace_rays++;
}

static VKAPI_ATTR void VKAPI_CALL k_CmdTraceRaysIndirect2KHR(VkCommandBuffer cb, VkDeviceAddress addr) {
    CB_OR_RETURN(cb, CmdTraceRaysIndirect2KHR, cb, addr);
    if (s) s->counts.trace_rays++;
}

static VKAPI_ATTR void VKAPI_CALL k_CmdBindPipeline(VkCommandBuffer cb, VkPipelineBindPoint bp, VkPipeline p) {
    CB_OR_RETURN(cb, CmdBindPipeline, cb, bp, p);
    if (!s) return;
    if (bp == VK_PIPELINE_BIND_POINT_COMPUTE) s->counts.compute_binds++;
    else if (bp == VK_PIPELINE_BIND_POINT_GRAPHICS) s->counts.graphics_binds++;
}

static VKAPI_ATTR void VKAPI_CALL k_CmdExecuteCommands(VkCommandBuffer cb, uint32_t n, const VkCommandBuffer *sec) {
    CB_OR_RETURN(cb, CmdExecuteCommands, cb, n, sec);
    if (!s) return;
    for (uint32_t i = 0; i < n; i++) {
        CbSlot *c = find_cb(sec[i]);
        if (!c) continue;
        uint64_t *dst = (uint64_t *)&s->counts;
        const uint64_t *src = (const uint64_t *)&c->counts;
        for (int k = 0; k < NCOUNTS; k++) dst[k] += src[k];
    }
}

/* ---- command buffer lifetime ---------------------------------------------------------------- */
static VKAPI_ATTR VkResult VKAPI_CALL k_AllocateCommandBuffers(VkDevice dev, const VkCommandBufferAllocateInfo *ai,
                                                               VkCommandBuffer *out) {
    DeviceData *d = find_device(dev);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    VkResult res = d->AllocateCommandBuffers(dev, ai, out);
    if (res == VK_SUCCESS) {
        pthread_mutex_lock(&g_lock);
        for (uint32_t i = 0; i < ai->commandBufferCount; i++) add_cb(out[i], d, ai->commandPool);
        pthread_mutex_unlock(&g_lock);
    }
    return res;
}

static VKAPI_ATTR void VKAPI_CALL k_FreeCommandBuffers(VkDevice dev, VkCommandPool pool, uint32_t n,
                                                       const VkCommandBuffer *cbs) {
    DeviceData *d = find_device(dev);
    if (!d) return;
    pthread_mutex_lock(&g_lock);
    for (uint32_t i = 0; i < n; i++)
        if (cbs[i]) remove_cb(cbs[i]);
    pthread_mutex_unlock(&g_lock);
    d->FreeCommandBuffers(dev, pool, n, cbs);
}

static void for_pool(VkCommandPool pool, int remove) { /* under g_lock */
    for (size_t i = 0; i < CB_SLOTS; i++) {
        uintptr_t k = atomic_load_explicit(&g_cbs[i].key, memory_order_relaxed);
        if (k > TOMBSTONE && g_cbs[i].pool == pool) {
            if (remove) atomic_store_explicit(&g_cbs[i].key, TOMBSTONE, memory_order_release);
            else memset(&g_cbs[i].counts, 0, sizeof g_cbs[i].counts);
        }
    }
}

static VKAPI_ATTR void VKAPI_CALL k_DestroyCommandPool(VkDevice dev, VkCommandPool pool, const VkAllocationCallbacks *a) {
    DeviceData *d = find_device(dev);
    if (!d) return;
    pthread_mutex_lock(&g_lock);
    if (pool != VK_NULL_HANDLE) for_pool(pool, 1);
    pthread_mutex_unlock(&g_lock);
    d->DestroyCommandPool(dev, pool, a);
}

static VKAPI_ATTR VkResult VKAPI_CALL k_ResetCommandPool(VkDevice dev, VkCommandPool pool, VkCommandPoolResetFlags f) {
    DeviceData *d = find_device(dev);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    pthread_mutex_lock(&g_lock);
    for_pool(pool, 0);
    pthread_mutex_unlock(&g_lock);
    return d->ResetCommandPool(dev, pool, f);
}

static VKAPI_ATTR VkResult VKAPI_CALL k_BeginCommandBuffer(VkCommandBuffer cb, const VkCommandBufferBeginInfo *bi) {
    CbSlot *s = find_cb(cb);
    DeviceData *d = s ? s->dev : find_device(cb);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    if (s) memset(&s->counts, 0, sizeof s->counts); /* begin resets a buffer implicitly */
    return d->BeginCommandBuffer(cb, bi);
}

/* ---- submit and present ---------------------------------------------------------------------- */
static VKAPI_ATTR VkResult VKAPI_CALL k_QueueSubmit(VkQueue q, uint32_t n, const VkSubmitInfo *si, VkFence f) {
    DeviceData *d = find_device(q);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < si[i].commandBufferCount; j++) submit_cb(si[i].pCommandBuffers[j]);
    VkResult res = d->QueueSubmit(q, n, si, f);
    atomic_fetch_add_explicit(&g_frame[SUBMITS], 1, memory_order_relaxed);
    if (!atomic_load_explicit(&g_presenting, memory_order_relaxed)) close_frame();
    return res;
}

static VKAPI_ATTR VkResult VKAPI_CALL k_QueueSubmit2(VkQueue q, uint32_t n, const VkSubmitInfo2 *si, VkFence f) {
    DeviceData *d = find_device(q);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < si[i].commandBufferInfoCount; j++) submit_cb(si[i].pCommandBufferInfos[j].commandBuffer);
    VkResult res = d->QueueSubmit2(q, n, si, f);
    atomic_fetch_add_explicit(&g_frame[SUBMITS], 1, memory_order_relaxed);
    if (!atomic_load_explicit(&g_presenting, memory_order_relaxed)) close_frame();
    return res;
}

static VKAPI_ATTR VkResult VKAPI_CALL k_QueuePresentKHR(VkQueue q, const VkPresentInfoKHR *pi) {
    DeviceData *d = find_device(q);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    VkResult res = d->QueuePresentKHR(q, pi);
    /* Before the first present every submit closed a frame, the frame being presented included:
     * closing another now would write an empty frame (0 draws) that readers show as the latest
     * until the next present. Only when something was submitted since does the present close one. */
    int first = !atomic_exchange_explicit(&g_presenting, 1, memory_order_relaxed);
    if (!first || atomic_load_explicit(&g_frame[SUBMITS], memory_order_relaxed) != 0) close_frame();
    return res;
}

/* ---- device creation ------------------------------------------------------------------------- */
static PFN_vkVoidFunction device_intercept(const char *name);

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL k_GetDeviceProcAddr(VkDevice dev, const char *name) {
    DeviceData *d = find_device(dev);
    if (!d) return NULL;
    PFN_vkVoidFunction next = d->gdpa(dev, name);
    if (!next) return NULL; /* not enabled on this device: our wrapper must not appear either */
    PFN_vkVoidFunction ours = device_intercept(name);
    return ours ? ours : next;
}

static VKAPI_ATTR VkResult VKAPI_CALL k_CreateDevice(VkPhysicalDevice phys, const VkDeviceCreateInfo *ci,
                                                     const VkAllocationCallbacks *a, VkDevice *out) {
    VkLayerDeviceCreateInfo *link = (VkLayerDeviceCreateInfo *)ci->pNext;
    while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
        link = (VkLayerDeviceCreateInfo *)link->pNext;
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    PFN_vkGetDeviceProcAddr gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    InstanceData *inst = find_instance(phys);
    PFN_vkCreateDevice create = (PFN_vkCreateDevice)gipa(inst ? inst->instance : VK_NULL_HANDLE, "vkCreateDevice");
    if (!create) return VK_ERROR_INITIALIZATION_FAILED;
    VkResult res = create(phys, ci, a, out);
    if (res != VK_SUCCESS) return res;
    PFN_vkGetPhysicalDeviceProperties props_fn =
        inst ? (PFN_vkGetPhysicalDeviceProperties)gipa(inst->instance, "vkGetPhysicalDeviceProperties") : NULL;
    VkPhysicalDeviceProperties props;
    if (props_fn) props_fn(phys, &props);
    pthread_mutex_lock(&g_lock);
    if (props_fn && g_ring) { /* which GPU the counts belong to, for gpu_telemetry's per-device message */
        g_ring->header.vendor_id = props.vendorID;
        g_ring->header.device_id = props.deviceID;
    }
    DeviceData *d = NULL;
    for (int i = 0; i < MAX_DEVICES && !d; i++)
        if (atomic_load(&g_devices[i].key) == NULL) d = &g_devices[i];
    if (d) {
        memset((char *)d + sizeof d->key, 0, sizeof *d - sizeof d->key);
        d->device = *out;
        d->gdpa = gdpa;
#define GET(field, ...) do { const char *names[] = {__VA_ARGS__}; \
        for (size_t k = 0; k < sizeof names / sizeof *names && !d->field; k++) \
            d->field = (PFN_vk##field)gdpa(*out, names[k]); } while (0)
        GET(DestroyDevice, "vkDestroyDevice");
        GET(AllocateCommandBuffers, "vkAllocateCommandBuffers");
        GET(FreeCommandBuffers, "vkFreeCommandBuffers");
        GET(DestroyCommandPool, "vkDestroyCommandPool");
        GET(ResetCommandPool, "vkResetCommandPool");
        GET(BeginCommandBuffer, "vkBeginCommandBuffer");
        GET(CmdDraw, "vkCmdDraw");
        GET(CmdDrawIndexed, "vkCmdDrawIndexed");
        GET(CmdDrawIndirect, "vkCmdDrawIndirect");
        GET(CmdDrawIndexedIndirect, "vkCmdDrawIndexedIndirect");
        GET(CmdDrawIndirectCount, "vkCmdDrawIndirectCount", "vkCmdDrawIndirectCountKHR", "vkCmdDrawIndirectCountAMD");
        GET(CmdDrawIndexedIndirectCount, "vkCmdDrawIndexedIndirectCount", "vkCmdDrawIndexedIndirectCountKHR",
            "vkCmdDrawIndexedIndirectCountAMD");
        GET(CmdDrawMultiEXT, "vkCmdDrawMultiEXT");
        GET(CmdDrawMultiIndexedEXT, "vkCmdDrawMultiIndexedEXT");
        GET(CmdDispatch, "vkCmdDispatch");
        GET(CmdDispatchBase, "vkCmdDispatchBase", "vkCmdDispatchBaseKHR");
        GET(CmdDispatchIndirect, "vkCmdDispatchIndirect");
        GET(CmdDrawMeshTasksEXT, "vkCmdDrawMeshTasksEXT");
        GET(CmdDrawMeshTasksIndirectEXT, "vkCmdDrawMeshTasksIndirectEXT");
        GET(CmdDrawMeshTasksIndirectCountEXT, "vkCmdDrawMeshTasksIndirectCountEXT");
        GET(CmdDrawMeshTasksNV, "vkCmdDrawMeshTasksNV");
        GET(CmdDrawMeshTasksIndirectNV, "vkCmdDrawMeshTasksIndirectNV");
        GET(CmdDrawMeshTasksIndirectCountNV, "vkCmdDrawMeshTasksIndirectCountNV");
        GET(CmdDrawIndirectByteCountEXT, "vkCmdDrawIndirectByteCountEXT");
        GET(CmdTraceRaysKHR, "vkCmdTraceRaysKHR");
        GET(CmdTraceRaysNV, "vkCmdTraceRaysNV");
        GET(CmdTraceRaysIndirectKHR, "vkCmdTraceRaysIndirectKHR");
        GET(CmdTraceRaysIndirect2KHR, "vkCmdTraceRaysIndirect2KHR");
        GET(CmdBindPipeline, "vkCmdBindPipeline");
        GET(CmdExecuteCommands, "vkCmdExecuteCommands");
        GET(QueueSubmit, "vkQueueSubmit");
        GET(QueueSubmit2, "vkQueueSubmit2", "vkQueueSubmit2KHR");
        GET(QueuePresentKHR, "vkQueuePresentKHR");
#undef GET
        atomic_store_explicit(&d->key, dispatch_key(*out), memory_order_release);
    }
    pthread_mutex_unlock(&g_lock);
    return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL k_DestroyDevice(VkDevice dev, const VkAllocationCallbacks *a) {
    DeviceData *d = find_device(dev);
    if (!d) return;
    PFN_vkDestroyDevice destroy = d->DestroyDevice;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < CB_SLOTS; i++)
        if (atomic_load(&g_cbs[i].key) > TOMBSTONE && g_cbs[i].dev == d) atomic_store(&g_cbs[i].key, TOMBSTONE);
    atomic_store(&d->key, NULL);
    pthread_mutex_unlock(&g_lock);
    destroy(dev, a);
}

/* ---- instance ---------------------------------------------------------------------------------- */
static VKAPI_ATTR VkResult VKAPI_CALL k_CreateInstance(const VkInstanceCreateInfo *ci, const VkAllocationCallbacks *a,
                                                       VkInstance *out) {
    VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)ci->pNext;
    while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
        link = (VkLayerInstanceCreateInfo *)link->pNext;
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    PFN_vkCreateInstance create = (PFN_vkCreateInstance)gipa(VK_NULL_HANDLE, "vkCreateInstance");
    if (!create) return VK_ERROR_INITIALIZATION_FAILED;
    VkResult res = create(ci, a, out);
    if (res != VK_SUCCESS) return res;
    pthread_mutex_lock(&g_lock);
    InstanceData *d = NULL;
    for (int i = 0; i < MAX_INSTANCES && !d; i++)
        if (atomic_load(&g_instances[i].key) == NULL) d = &g_instances[i];
    if (d) {
        d->instance = *out;
        d->gipa = gipa;
        d->DestroyInstance = (PFN_vkDestroyInstance)gipa(*out, "vkDestroyInstance");
        d->EnumerateDeviceExtensionProperties =
            (PFN_vkEnumerateDeviceExtensionProperties)gipa(*out, "vkEnumerateDeviceExtensionProperties");
        atomic_store_explicit(&d->key, dispatch_key(*out), memory_order_release);
        if (g_instance_count++ == 0)
            open_ring(ci->pApplicationInfo ? ci->pApplicationInfo->pApplicationName : NULL);
    }
    pthread_mutex_unlock(&g_lock);
    return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL k_DestroyInstance(VkInstance inst, const VkAllocationCallbacks *a) {
    InstanceData *d = find_instance(inst);
    if (!d) return;
    PFN_vkDestroyInstance destroy = d->DestroyInstance;
    pthread_mutex_lock(&g_lock);
    atomic_store(&d->key, NULL);
    if (--g_instance_count == 0) {
        pthread_mutex_lock(&g_ring_lock);
        close_ring();
        pthread_mutex_unlock(&g_ring_lock);
    }
    pthread_mutex_unlock(&g_lock);
    destroy(inst, a);
}

static VKAPI_ATTR VkResult VKAPI_CALL k_EnumerateDeviceExtensionProperties(VkPhysicalDevice phys, const char *layer,
                                                                           uint32_t *count, VkExtensionProperties *p) {
    if (layer && strcmp(layer, LAYER_NAME) == 0) { *count = 0; return VK_SUCCESS; } /* we add none */
    InstanceData *d = find_instance(phys);
    if (!d) return VK_ERROR_INITIALIZATION_FAILED;
    return d->EnumerateDeviceExtensionProperties(phys, layer, count, p);
}

static PFN_vkVoidFunction device_intercept(const char *name) {
    static const struct { const char *name; PFN_vkVoidFunction fn; } table[] = {
        {"vkGetDeviceProcAddr", (PFN_vkVoidFunction)k_GetDeviceProcAddr},
        {"vkDestroyDevice", (PFN_vkVoidFunction)k_DestroyDevice},
        {"vkAllocateCommandBuffers", (PFN_vkVoidFunction)k_AllocateCommandBuffers},
        {"vkFreeCommandBuffers", (PFN_vkVoidFunction)k_FreeCommandBuffers},
        {"vkDestroyCommandPool", (PFN_vkVoidFunction)k_DestroyCommandPool},
        {"vkResetCommandPool", (PFN_vkVoidFunction)k_ResetCommandPool},
        {"vkBeginCommandBuffer", (PFN_vkVoidFunction)k_BeginCommandBuffer},
        {"vkCmdDraw", (PFN_vkVoidFunction)k_CmdDraw},
        {"vkCmdDrawIndexed", (PFN_vkVoidFunction)k_CmdDrawIndexed},
        {"vkCmdDrawIndirect", (PFN_vkVoidFunction)k_CmdDrawIndirect},
        {"vkCmdDrawIndexedIndirect", (PFN_vkVoidFunction)k_CmdDrawIndexedIndirect},
        {"vkCmdDrawIndirectCount", (PFN_vkVoidFunction)k_CmdDrawIndirectCount},
        {"vkCmdDrawIndirectCountKHR", (PFN_vkVoidFunction)k_CmdDrawIndirectCount},
        {"vkCmdDrawIndirectCountAMD", (PFN_vkVoidFunction)k_CmdDrawIndirectCount},
        {"vkCmdDrawIndexedIndirectCount", (PFN_vkVoidFunction)k_CmdDrawIndexedIndirectCount},
        {"vkCmdDrawIndexedIndirectCountKHR", (PFN_vkVoidFunction)k_CmdDrawIndexedIndirectCount},
        {"vkCmdDrawIndexedIndirectCountAMD", (PFN_vkVoidFunction)k_CmdDrawIndexedIndirectCount},
        {"vkCmdDrawMultiEXT", (PFN_vkVoidFunction)k_CmdDrawMultiEXT},
        {"vkCmdDrawMultiIndexedEXT", (PFN_vkVoidFunction)k_CmdDrawMultiIndexedEXT},
        {"vkCmdDispatch", (PFN_vkVoidFunction)k_CmdDispatch},
        {"vkCmdDispatchBase", (PFN_vkVoidFunction)k_CmdDispatchBase},
        {"vkCmdDispatchBaseKHR", (PFN_vkVoidFunction)k_CmdDispatchBase},
        {"vkCmdDispatchIndirect", (PFN_vkVoidFunction)k_CmdDispatchIndirect},
        {"vkCmdDrawMeshTasksEXT", (PFN_vkVoidFunction)k_CmdDrawMeshTasksEXT},
        {"vkCmdDrawMeshTasksIndirectEXT", (PFN_vkVoidFunction)k_CmdDrawMeshTasksIndirectEXT},
        {"vkCmdDrawMeshTasksIndirectCountEXT", (PFN_vkVoidFunction)k_CmdDrawMeshTasksIndirectCountEXT},
        {"vkCmdDrawMeshTasksNV", (PFN_vkVoidFunction)k_CmdDrawMeshTasksNV},
        {"vkCmdDrawMeshTasksIndirectNV", (PFN_vkVoidFunction)k_CmdDrawMeshTasksIndirectNV},
        {"vkCmdDrawMeshTasksIndirectCountNV", (PFN_vkVoidFunction)k_CmdDrawMeshTasksIndirectCountNV},
        {"vkCmdDrawIndirectByteCountEXT", (PFN_vkVoidFunction)k_CmdDrawIndirectByteCountEXT},
        {"vkCmdTraceRaysKHR", (PFN_vkVoidFunction)k_CmdTraceRaysKHR},
        {"vkCmdTraceRaysNV", (PFN_vkVoidFunction)k_CmdTraceRaysNV},
        {"vkCmdTraceRaysIndirectKHR", (PFN_vkVoidFunction)k_CmdTraceRaysIndirectKHR},
        {"vkCmdTraceRaysIndirect2KHR", (PFN_vkVoidFunction)k_CmdTraceRaysIndirect2KHR},
        {"vkCmdBindPipeline", (PFN_vkVoidFunction)k_CmdBindPipeline},
        {"vkCmdExecuteCommands", (PFN_vkVoidFunction)k_CmdExecuteCommands},
        {"vkQueueSubmit", (PFN_vkVoidFunction)k_QueueSubmit},
        {"vkQueueSubmit2", (PFN_vkVoidFunction)k_QueueSubmit2},
        {"vkQueueSubmit2KHR", (PFN_vkVoidFunction)k_QueueSubmit2},
        {"vkQueuePresentKHR", (PFN_vkVoidFunction)k_QueuePresentKHR},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strcmp(name, table[i].name) == 0) return table[i].fn;
    return NULL;
}

/* The exported names only forward: taking their address inside the library would resolve to the
 * loader's own vkGetInstanceProcAddr (symbol interposition), and the chain would loop into it. */
static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL k_GetInstanceProcAddr(VkInstance inst, const char *name) {
    if (strcmp(name, "vkGetInstanceProcAddr") == 0) return (PFN_vkVoidFunction)k_GetInstanceProcAddr;
    if (strcmp(name, "vkCreateInstance") == 0) return (PFN_vkVoidFunction)k_CreateInstance;
    if (strcmp(name, "vkDestroyInstance") == 0) return (PFN_vkVoidFunction)k_DestroyInstance;
    if (strcmp(name, "vkCreateDevice") == 0) return (PFN_vkVoidFunction)k_CreateDevice;
    if (strcmp(name, "vkEnumerateDeviceExtensionProperties") == 0)
        return (PFN_vkVoidFunction)k_EnumerateDeviceExtensionProperties;
    if (inst == VK_NULL_HANDLE) return NULL;
    InstanceData *d = find_instance(inst);
    if (!d) return NULL;
    PFN_vkVoidFunction next = d->gipa(inst, name);
    PFN_vkVoidFunction ours = next ? device_intercept(name) : NULL;
    return ours ? ours : next;
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetDeviceProcAddr(VkDevice dev, const char *name) {
    return k_GetDeviceProcAddr(dev, name);
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(VkInstance inst, const char *name) {
    return k_GetInstanceProcAddr(inst, name);
}

EXPORT VKAPI_ATTR VkResult VKAPI_CALL vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *v) {
    if (!v || v->sType != LAYER_NEGOTIATE_INTERFACE_STRUCT) return VK_ERROR_INITIALIZATION_FAILED;
    if (v->loaderLayerInterfaceVersion > 2) v->loaderLayerInterfaceVersion = 2;
    v->pfnGetInstanceProcAddr = k_GetInstanceProcAddr;
    v->pfnGetDeviceProcAddr = k_GetDeviceProcAddr;
    v->pfnGetPhysicalDeviceProcAddr = NULL;
    return VK_SUCCESS;
}
