/* The layer under a stand-in driver, for commands llvmpipe does not have (mesh shaders, ray tracing).
 *
 * Loads the layer library (argv[1]) as the loader would (vkNegotiateLoaderLayerInterfaceVersion,
 * the instance and device link chains) with a minimal "next" below it that offers the
 * VK_EXT_mesh_shader, VK_NV_mesh_shader, VK_EXT_transform_feedback, VK_KHR_ray_tracing_pipeline,
 * VK_KHR_ray_tracing_maintenance1 and VK_NV_ray_tracing commands as stubs counting their calls.
 * Checks that the layer's vkGetDeviceProcAddr hands out its own wrapper for each, records a known
 * number of each into one command buffer per frame, submits twice (mesh work, then ray tracing),
 * then starts presenting as a windowed program does (submit, present, submit, present), prints one
 * JSON line and keeps the instance (and the layer's ring) until stdin closes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

typedef struct { void *key; } Handle; /* a dispatchable handle: its first word is the dispatch key */
static int inst_key, dev_key;
static Handle g_inst = {&inst_key}, g_phys = {&inst_key}, g_dev = {&dev_key}, g_queue = {&dev_key}, g_cb = {&dev_key};
static int g_forwarded; /* calls that reached the stand-in driver through the layer */

#define STUB(name, params) static VKAPI_ATTR void VKAPI_CALL stub_##name params { g_forwarded++; }
STUB(CmdDrawMeshTasksEXT, (VkCommandBuffer c, uint32_t x, uint32_t y, uint32_t z))
STUB(CmdDrawMeshTasksIndirectEXT, (VkCommandBuffer c, VkBuffer b, VkDeviceSize o, uint32_t n, uint32_t s))
STUB(CmdDrawMeshTasksIndirectCountEXT, (VkCommandBuffer c, VkBuffer b, VkDeviceSize o, VkBuffer cb, VkDeviceSize co,
                                        uint32_t m, uint32_t s))
STUB(CmdDrawMeshTasksNV, (VkCommandBuffer c, uint32_t n, uint32_t f))
STUB(CmdDrawMeshTasksIndirectNV, (VkCommandBuffer c, VkBuffer b, VkDeviceSize o, uint32_t n, uint32_t s))
STUB(CmdDrawMeshTasksIndirectCountNV, (VkCommandBuffer c, VkBuffer b, VkDeviceSize o, VkBuffer cb, VkDeviceSize co,
                                       uint32_t m, uint32_t s))
STUB(CmdDrawIndirectByteCountEXT, (VkCommandBuffer c, uint32_t i, uint32_t f, VkBuffer b, VkDeviceSize o, uint32_t co,
                                   uint32_t s))
STUB(CmdTraceRaysKHR, (VkCommandBuffer c, const VkStridedDeviceAddressRegionKHR *a,
                       const VkStridedDeviceAddressRegionKHR *b, const VkStridedDeviceAddressRegionKHR *h,
                       const VkStridedDeviceAddressRegionKHR *l, uint32_t w, uint32_t ht, uint32_t d))
STUB(CmdTraceRaysNV, (VkCommandBuffer c, VkBuffer a, VkDeviceSize ao, VkBuffer b, VkDeviceSize bo, VkDeviceSize bs,
                      VkBuffer h, VkDeviceSize ho, VkDeviceSize hs, VkBuffer l, VkDeviceSize lo, VkDeviceSize ls,
                      uint32_t w, uint32_t ht, uint32_t d))
STUB(CmdTraceRaysIndirectKHR, (VkCommandBuffer c, const VkStridedDeviceAddressRegionKHR *a,
                               const VkStridedDeviceAddressRegionKHR *b, const VkStridedDeviceAddressRegionKHR *h,
                               const VkStridedDeviceAddressRegionKHR *l, VkDeviceAddress addr))
STUB(CmdTraceRaysIndirect2KHR, (VkCommandBuffer c, VkDeviceAddress addr))

static VKAPI_ATTR VkResult VKAPI_CALL next_CreateInstance(const VkInstanceCreateInfo *ci, const VkAllocationCallbacks *a,
                                                          VkInstance *out) {
    (void)ci; (void)a;
    *out = (VkInstance)&g_inst;
    return VK_SUCCESS;
}
static VKAPI_ATTR void VKAPI_CALL next_DestroyInstance(VkInstance i, const VkAllocationCallbacks *a) { (void)i; (void)a; }
static VKAPI_ATTR VkResult VKAPI_CALL next_CreateDevice(VkPhysicalDevice p, const VkDeviceCreateInfo *ci,
                                                        const VkAllocationCallbacks *a, VkDevice *out) {
    (void)p; (void)ci; (void)a;
    *out = (VkDevice)&g_dev;
    return VK_SUCCESS;
}
static VKAPI_ATTR void VKAPI_CALL next_DestroyDevice(VkDevice d, const VkAllocationCallbacks *a) { (void)d; (void)a; }
static VKAPI_ATTR void VKAPI_CALL next_GetPhysicalDeviceProperties(VkPhysicalDevice p, VkPhysicalDeviceProperties *out) {
    (void)p;
    memset(out, 0, sizeof *out);
    out->vendorID = 0x10de;
    out->deviceID = 0x2330;
}
static VKAPI_ATTR VkResult VKAPI_CALL next_AllocateCommandBuffers(VkDevice d, const VkCommandBufferAllocateInfo *ai,
                                                                  VkCommandBuffer *out) {
    (void)d; (void)ai;
    out[0] = (VkCommandBuffer)&g_cb;
    return VK_SUCCESS;
}
static VKAPI_ATTR VkResult VKAPI_CALL next_BeginCommandBuffer(VkCommandBuffer c, const VkCommandBufferBeginInfo *b) {
    (void)c; (void)b;
    return VK_SUCCESS;
}
static VKAPI_ATTR VkResult VKAPI_CALL next_QueueSubmit(VkQueue q, uint32_t n, const VkSubmitInfo *s, VkFence f) {
    (void)q; (void)n; (void)s; (void)f;
    return VK_SUCCESS;
}
static VKAPI_ATTR VkResult VKAPI_CALL next_QueuePresentKHR(VkQueue q, const VkPresentInfoKHR *p) {
    (void)q; (void)p;
    return VK_SUCCESS;
}

static PFN_vkVoidFunction VKAPI_CALL next_gdpa(VkDevice d, const char *name);

#define ENTRY(name, fn) {name, (PFN_vkVoidFunction)fn}
static const struct { const char *name; PFN_vkVoidFunction fn; } g_device_fns[] = {
    ENTRY("vkDestroyDevice", next_DestroyDevice),
    ENTRY("vkAllocateCommandBuffers", next_AllocateCommandBuffers),
    ENTRY("vkBeginCommandBuffer", next_BeginCommandBuffer),
    ENTRY("vkQueueSubmit", next_QueueSubmit),
    ENTRY("vkQueuePresentKHR", next_QueuePresentKHR),
    ENTRY("vkCmdDrawMeshTasksEXT", stub_CmdDrawMeshTasksEXT),
    ENTRY("vkCmdDrawMeshTasksIndirectEXT", stub_CmdDrawMeshTasksIndirectEXT),
    ENTRY("vkCmdDrawMeshTasksIndirectCountEXT", stub_CmdDrawMeshTasksIndirectCountEXT),
    ENTRY("vkCmdDrawMeshTasksNV", stub_CmdDrawMeshTasksNV),
    ENTRY("vkCmdDrawMeshTasksIndirectNV", stub_CmdDrawMeshTasksIndirectNV),
    ENTRY("vkCmdDrawMeshTasksIndirectCountNV", stub_CmdDrawMeshTasksIndirectCountNV),
    ENTRY("vkCmdDrawIndirectByteCountEXT", stub_CmdDrawIndirectByteCountEXT),
    ENTRY("vkCmdTraceRaysKHR", stub_CmdTraceRaysKHR),
    ENTRY("vkCmdTraceRaysNV", stub_CmdTraceRaysNV),
    ENTRY("vkCmdTraceRaysIndirectKHR", stub_CmdTraceRaysIndirectKHR),
    ENTRY("vkCmdTraceRaysIndirect2KHR", stub_CmdTraceRaysIndirect2KHR),
};
#define N_DEVICE_FNS (sizeof g_device_fns / sizeof *g_device_fns)
#define FIRST_CMD 5 /* the vkCmd* entries, from here on */

static PFN_vkVoidFunction VKAPI_CALL next_gdpa(VkDevice d, const char *name) {
    (void)d;
    if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)next_gdpa;
    for (size_t i = 0; i < N_DEVICE_FNS; i++)
        if (!strcmp(name, g_device_fns[i].name)) return g_device_fns[i].fn;
    return NULL; /* not offered: the layer must not offer a wrapper either */
}

static PFN_vkVoidFunction VKAPI_CALL next_gipa(VkInstance inst, const char *name) {
    (void)inst;
    if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)next_CreateInstance;
    if (!strcmp(name, "vkDestroyInstance")) return (PFN_vkVoidFunction)next_DestroyInstance;
    if (!strcmp(name, "vkCreateDevice")) return (PFN_vkVoidFunction)next_CreateDevice;
    if (!strcmp(name, "vkGetPhysicalDeviceProperties")) return (PFN_vkVoidFunction)next_GetPhysicalDeviceProperties;
    return next_gdpa(VK_NULL_HANDLE, name);
}

#define GET(type, name) ((type)gdpa(dev, name))

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: intercept_test LAYER.so\n"); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    PFN_vkNegotiateLoaderLayerInterfaceVersion negotiate =
        (PFN_vkNegotiateLoaderLayerInterfaceVersion)dlsym(lib, "vkNegotiateLoaderLayerInterfaceVersion");
    VkNegotiateLayerInterface ni = {LAYER_NEGOTIATE_INTERFACE_STRUCT, NULL, 2, NULL, NULL, NULL};
    if (!negotiate || negotiate(&ni) != VK_SUCCESS) { fprintf(stderr, "negotiation failed\n"); return 2; }
    PFN_vkGetInstanceProcAddr gipa = ni.pfnGetInstanceProcAddr;
    PFN_vkGetDeviceProcAddr gdpa = ni.pfnGetDeviceProcAddr;

    VkLayerInstanceLink ilink = {NULL, next_gipa, NULL};
    VkLayerInstanceCreateInfo ilci = {VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO, NULL, VK_LAYER_LINK_INFO, {&ilink}};
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "krystal-intercept-test", 1, NULL, 0,
                             VK_API_VERSION_1_3};
    VkInstanceCreateInfo ici = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, &ilci, 0, &app, 0, NULL, 0, NULL};
    VkInstance inst;
    if (((PFN_vkCreateInstance)gipa(VK_NULL_HANDLE, "vkCreateInstance"))(&ici, NULL, &inst) != VK_SUCCESS) return 3;
    VkLayerDeviceLink dlink = {NULL, next_gipa, next_gdpa};
    VkLayerDeviceCreateInfo dlci = {VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO, NULL, VK_LAYER_LINK_INFO, {&dlink}};
    VkDeviceCreateInfo dci = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &dlci, 0, 0, NULL, 0, NULL, 0, NULL, NULL};
    VkDevice dev;
    if (((PFN_vkCreateDevice)gipa(inst, "vkCreateDevice"))((VkPhysicalDevice)&g_phys, &dci, NULL, &dev) != VK_SUCCESS)
        return 3;

    /* every command: the layer's own wrapper, not the driver's stub; a missing one stays missing */
    int intercepted = 0;
    for (size_t i = FIRST_CMD; i < N_DEVICE_FNS; i++) {
        PFN_vkVoidFunction fn = gdpa(dev, g_device_fns[i].name);
        if (fn && fn != g_device_fns[i].fn) intercepted++;
        else fprintf(stderr, "not intercepted: %s\n", g_device_fns[i].name);
    }
    int absent_hidden = gdpa(dev, "vkCmdDrawClusterHUAWEI") == NULL;

    VkCommandBuffer cb;
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, VK_NULL_HANDLE,
                                      VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    GET(PFN_vkAllocateCommandBuffers, "vkAllocateCommandBuffers")(dev, &ai, &cb);
    PFN_vkBeginCommandBuffer begin = GET(PFN_vkBeginCommandBuffer, "vkBeginCommandBuffer");
    PFN_vkQueueSubmit submit = GET(PFN_vkQueueSubmit, "vkQueueSubmit");
    VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO, NULL, 0, NULL, NULL, 1, &cb, 0, NULL};
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL, 0, NULL};

    /* frame 0: 6 mesh-task calls (9 draws, 7 indirect) and 1 byte-count draw of 2 instances */
    begin(cb, &bi);
    GET(PFN_vkCmdDrawMeshTasksEXT, "vkCmdDrawMeshTasksEXT")(cb, 4, 2, 1);
    GET(PFN_vkCmdDrawMeshTasksIndirectEXT, "vkCmdDrawMeshTasksIndirectEXT")(cb, VK_NULL_HANDLE, 0, 2, 12);
    GET(PFN_vkCmdDrawMeshTasksIndirectCountEXT, "vkCmdDrawMeshTasksIndirectCountEXT")(cb, VK_NULL_HANDLE, 0,
                                                                                      VK_NULL_HANDLE, 0, 8, 12);
    GET(PFN_vkCmdDrawMeshTasksNV, "vkCmdDrawMeshTasksNV")(cb, 5, 0);
    GET(PFN_vkCmdDrawMeshTasksIndirectNV, "vkCmdDrawMeshTasksIndirectNV")(cb, VK_NULL_HANDLE, 0, 3, 8);
    GET(PFN_vkCmdDrawMeshTasksIndirectCountNV, "vkCmdDrawMeshTasksIndirectCountNV")(cb, VK_NULL_HANDLE, 0,
                                                                                    VK_NULL_HANDLE, 0, 8, 8);
    GET(PFN_vkCmdDrawIndirectByteCountEXT, "vkCmdDrawIndirectByteCountEXT")(cb, 2, 0, VK_NULL_HANDLE, 0, 0, 16);
    submit((VkQueue)&g_queue, 1, &si, VK_NULL_HANDLE);

    /* frame 1: 4 trace-rays calls, 8x4x1 + 2x2x2 rays direct */
    begin(cb, &bi);
    VkStridedDeviceAddressRegionKHR r = {0, 0, 0};
    GET(PFN_vkCmdTraceRaysKHR, "vkCmdTraceRaysKHR")(cb, &r, &r, &r, &r, 8, 4, 1);
    GET(PFN_vkCmdTraceRaysNV, "vkCmdTraceRaysNV")(cb, VK_NULL_HANDLE, 0, VK_NULL_HANDLE, 0, 0, VK_NULL_HANDLE, 0, 0,
                                                  VK_NULL_HANDLE, 0, 0, 2, 2, 2);
    GET(PFN_vkCmdTraceRaysIndirectKHR, "vkCmdTraceRaysIndirectKHR")(cb, &r, &r, &r, &r, 0);
    GET(PFN_vkCmdTraceRaysIndirect2KHR, "vkCmdTraceRaysIndirect2KHR")(cb, 0);
    submit((VkQueue)&g_queue, 1, &si, VK_NULL_HANDLE);

    /* frames 2 and 3: presenting starts. The submit before the first present closed its frame; the
     * first present must not add an empty one; from then on a present closes each frame. */
    PFN_vkQueuePresentKHR present = GET(PFN_vkQueuePresentKHR, "vkQueuePresentKHR");
    VkPresentInfoKHR pi = {VK_STRUCTURE_TYPE_PRESENT_INFO_KHR, NULL, 0, NULL, 0, NULL, NULL, NULL};
    for (int f = 0; f < 2; f++) {
        begin(cb, &bi);
        GET(PFN_vkCmdDrawMeshTasksEXT, "vkCmdDrawMeshTasksEXT")(cb, 1, 1, 1);
        submit((VkQueue)&g_queue, 1, &si, VK_NULL_HANDLE);
        present((VkQueue)&g_queue, &pi);
    }

    printf("{\"intercepted\": %d, \"commands\": %d, \"forwarded\": %d, \"absent_hidden\": %d}\n", intercepted,
           (int)(N_DEVICE_FNS - FIRST_CMD), g_forwarded, absent_hidden);
    fflush(stdout);
    char line[16];
    while (fgets(line, sizeof line, stdin)) {
    }
    GET(PFN_vkDestroyDevice, "vkDestroyDevice")(dev, NULL);
    ((PFN_vkDestroyInstance)gipa(inst, "vkDestroyInstance"))(inst, NULL);
    return 0;
}
