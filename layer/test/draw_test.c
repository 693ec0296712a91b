/* Offscreen Vulkan program with known work per frame, for the layer's tests and benchmark.
 *
 * Per frame, in one command buffer: a render pass with `draws` vkCmdDraw of `triangles` triangles
 * and `instances` instances, `indexed` vkCmdDrawIndexed of the same size, `indirect` vkCmdDrawIndirect
 * (one draw each), `bytecount` vkCmdDrawIndirectByteCountEXT (VK_EXT_transform_feedback: the
 * device gets the extension only when this is > 0), then `dispatches` vkCmdDispatch of `groups` workgroups, and a copy of the image to
 * host memory; one submit. Prints one JSON line: what it did, an FNV-1a hash of the final image,
 * the compute counter, validation messages seen (VK_EXT_debug_utils) and, with --bench, the cost
 * of recording one vkCmdDraw. Shaders: tri.vert, tri.frag, fill.comp (glslangValidator -V -x). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vulkan/vulkan.h>

static const uint32_t vert_spv[] = {
#include "tri_vert.spv.h"
};
static const uint32_t frag_spv[] = {
#include "tri_frag.spv.h"
};
static const uint32_t comp_spv[] = {
#include "fill_comp.spv.h"
};

#define BENCH_BATCH 500
#define W 64
#define H 64
#define CHECK(x) do { VkResult r_ = (x); if (r_ != VK_SUCCESS) { fprintf(stderr, "%s failed: %d\n", #x, r_); exit(2); } } while (0)

static int g_errors, g_warnings;

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                 VkDebugUtilsMessageTypeFlagsEXT type,
                                                 const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    (void)type; (void)user;
    if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) g_errors++;
    else if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) g_warnings++;
    if (sev & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT))
        fprintf(stderr, "validation: %s\n", data->pMessage);
    return VK_FALSE;
}

static uint32_t memory_type(VkPhysicalDevice phys, uint32_t bits, VkMemoryPropertyFlags want) {
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(phys, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) return i;
    fprintf(stderr, "no memory type\n");
    exit(2);
}

static VkDeviceMemory bind_memory(VkDevice dev, VkPhysicalDevice phys, VkMemoryRequirements req,
                                  VkMemoryPropertyFlags want) {
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, NULL, req.size,
                               memory_type(phys, req.memoryTypeBits, want)};
    VkDeviceMemory mem;
    CHECK(vkAllocateMemory(dev, &ai, NULL, &mem));
    return mem;
}

static VkBuffer make_buffer(VkDevice dev, VkPhysicalDevice phys, VkDeviceSize size, VkBufferUsageFlags usage,
                            VkDeviceMemory *mem, void **mapped) {
    VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, NULL, 0, size, usage, VK_SHARING_MODE_EXCLUSIVE, 0, NULL};
    VkBuffer b;
    CHECK(vkCreateBuffer(dev, &bi, NULL, &b));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev, b, &req);
    *mem = bind_memory(dev, phys, req, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    CHECK(vkBindBufferMemory(dev, b, *mem, 0));
    CHECK(vkMapMemory(dev, *mem, 0, size, 0, mapped));
    return b;
}

static VkShaderModule shader(VkDevice dev, const uint32_t *code, size_t size) {
    VkShaderModuleCreateInfo ci = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, size, code};
    VkShaderModule m;
    CHECK(vkCreateShaderModule(dev, &ci, NULL, &m));
    return m;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int frames = 3, draws = 4, triangles = 2, instances = 3, indexed = 2, indirect = 1, dispatches = 2, groups = 4;
    int bytecount = 0;
    long bench = 0;
    int hold = 0;
    const char *app = "krystal-draw-test";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i];
        const char *v = argv[i + 1];
        if (!strcmp(k, "--frames")) frames = atoi(v);
        else if (!strcmp(k, "--draws")) draws = atoi(v);
        else if (!strcmp(k, "--triangles")) triangles = atoi(v);
        else if (!strcmp(k, "--instances")) instances = atoi(v);
        else if (!strcmp(k, "--indexed")) indexed = atoi(v);
        else if (!strcmp(k, "--indirect")) indirect = atoi(v);
        else if (!strcmp(k, "--bytecount")) bytecount = atoi(v);
        else if (!strcmp(k, "--dispatches")) dispatches = atoi(v);
        else if (!strcmp(k, "--groups")) groups = atoi(v);
        else if (!strcmp(k, "--bench")) bench = atol(v);
        else if (!strcmp(k, "--app")) app = v;
        else if (!strcmp(k, "--hold")) hold = atoi(v);
        else { fprintf(stderr, "unknown option %s\n", k); return 2; }
    }

    /* instance, with debug utils where available so validation messages are counted */
    uint32_t n_ext = 0;
    vkEnumerateInstanceExtensionProperties(NULL, &n_ext, NULL);
    VkExtensionProperties *exts = calloc(n_ext, sizeof *exts);
    vkEnumerateInstanceExtensionProperties(NULL, &n_ext, exts);
    int debug_utils = 0;
    for (uint32_t i = 0; i < n_ext; i++) debug_utils |= !strcmp(exts[i].extensionName, VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    free(exts);
    const char *inst_exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkApplicationInfo ai = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, app, 1, "krystal", 1, VK_API_VERSION_1_2};
    VkDebugUtilsMessengerCreateInfoEXT dci = {VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT, NULL, 0,
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT, on_message, NULL};
    VkInstanceCreateInfo ici = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, debug_utils ? &dci : NULL, 0, &ai, 0, NULL,
                                (uint32_t)debug_utils, inst_exts};
    VkInstance inst;
    CHECK(vkCreateInstance(&ici, NULL, &inst));
    VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
    PFN_vkCreateDebugUtilsMessengerEXT create_messenger =
        (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(inst, "vkCreateDebugUtilsMessengerEXT");
    if (debug_utils && create_messenger) CHECK(create_messenger(inst, &dci, NULL, &messenger));

    uint32_t n_phys = 1;
    VkPhysicalDevice phys;
    VkResult er = vkEnumeratePhysicalDevices(inst, &n_phys, &phys);
    if ((er != VK_SUCCESS && er != VK_INCOMPLETE) || n_phys == 0) { fprintf(stderr, "no Vulkan device\n"); return 3; }
    uint32_t n_q = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &n_q, NULL);
    VkQueueFamilyProperties qf[16];
    n_q = n_q > 16 ? 16 : n_q;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &n_q, qf);
    uint32_t family = 0;
    const VkQueueFlags want = VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT;
    while (family < n_q && (qf[family].queueFlags & want) != want) family++;
    if (family == n_q) { fprintf(stderr, "no graphics+compute queue\n"); return 3; }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, family, 1, &prio};
    VkDeviceCreateInfo dvi = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, NULL, 0, 1, &qci, 0, NULL, 0, NULL, NULL};
    const char *xfb_ext = VK_EXT_TRANSFORM_FEEDBACK_EXTENSION_NAME;
    VkPhysicalDeviceTransformFeedbackFeaturesEXT xfb = {
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TRANSFORM_FEEDBACK_FEATURES_EXT, NULL, VK_TRUE, VK_FALSE};
    if (bytecount > 0) { dvi.pNext = &xfb; dvi.enabledExtensionCount = 1; dvi.ppEnabledExtensionNames = &xfb_ext; }
    VkDevice dev;
    CHECK(vkCreateDevice(phys, &dvi, NULL, &dev));
    PFN_vkCmdDrawIndirectByteCountEXT draw_byte_count = bytecount > 0
        ? (PFN_vkCmdDrawIndirectByteCountEXT)vkGetDeviceProcAddr(dev, "vkCmdDrawIndirectByteCountEXT") : NULL;
    if (bytecount > 0 && !draw_byte_count) { fprintf(stderr, "no vkCmdDrawIndirectByteCountEXT\n"); return 3; }
    VkQueue queue;
    vkGetDeviceQueue(dev, family, 0, &queue);

    /* colour target, render pass, framebuffer */
    VkImageCreateInfo imi = {VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, NULL, 0, VK_IMAGE_TYPE_2D, VK_FORMAT_R8G8B8A8_UNORM,
                             {W, H, 1}, 1, 1, VK_SAMPLE_COUNT_1_BIT, VK_IMAGE_TILING_OPTIMAL,
                             VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
                             VK_SHARING_MODE_EXCLUSIVE, 0, NULL, VK_IMAGE_LAYOUT_UNDEFINED};
    VkImage image;
    CHECK(vkCreateImage(dev, &imi, NULL, &image));
    VkMemoryRequirements ireq;
    vkGetImageMemoryRequirements(dev, image, &ireq);
    VkDeviceMemory imem = bind_memory(dev, phys, ireq, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    CHECK(vkBindImageMemory(dev, image, imem, 0));
    VkImageViewCreateInfo ivi = {VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, NULL, 0, image, VK_IMAGE_VIEW_TYPE_2D,
                                 VK_FORMAT_R8G8B8A8_UNORM, {0}, {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1}};
    VkImageView view;
    CHECK(vkCreateImageView(dev, &ivi, NULL, &view));
    VkAttachmentDescription att = {0, VK_FORMAT_R8G8B8A8_UNORM, VK_SAMPLE_COUNT_1_BIT, VK_ATTACHMENT_LOAD_OP_CLEAR,
                                   VK_ATTACHMENT_STORE_OP_STORE, VK_ATTACHMENT_LOAD_OP_DONT_CARE,
                                   VK_ATTACHMENT_STORE_OP_DONT_CARE, VK_IMAGE_LAYOUT_UNDEFINED,
                                   VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL};
    VkAttachmentReference ref = {0, VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL};
    VkSubpassDescription sub = {0, VK_PIPELINE_BIND_POINT_GRAPHICS, 0, NULL, 1, &ref, NULL, NULL, 0, NULL};
    VkSubpassDependency dep = {0, VK_SUBPASS_EXTERNAL, VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                               VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
                               VK_ACCESS_TRANSFER_READ_BIT, 0};
    VkRenderPassCreateInfo rpi = {VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO, NULL, 0, 1, &att, 1, &sub, 1, &dep};
    VkRenderPass pass;
    CHECK(vkCreateRenderPass(dev, &rpi, NULL, &pass));
    VkFramebufferCreateInfo fbi = {VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO, NULL, 0, pass, 1, &view, W, H, 1};
    VkFramebuffer fb;
    CHECK(vkCreateFramebuffer(dev, &fbi, NULL, &fb));

    /* graphics pipeline */
    VkPipelineLayoutCreateInfo gli = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 0, NULL, 0, NULL};
    VkPipelineLayout glayout;
    CHECK(vkCreatePipelineLayout(dev, &gli, NULL, &glayout));
    VkShaderModule vs = shader(dev, vert_spv, sizeof vert_spv), fs = shader(dev, frag_spv, sizeof frag_spv);
    VkPipelineShaderStageCreateInfo stages[2] = {
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_VERTEX_BIT, vs, "main", NULL},
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_FRAGMENT_BIT, fs, "main", NULL}};
    VkPipelineVertexInputStateCreateInfo vin = {VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO};
    VkPipelineInputAssemblyStateCreateInfo ia = {VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO, NULL, 0,
                                                  VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST, VK_FALSE};
    VkViewport vp = {0, 0, W, H, 0, 1};
    VkRect2D sc = {{0, 0}, {W, H}};
    VkPipelineViewportStateCreateInfo vps = {VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO, NULL, 0, 1, &vp, 1, &sc};
    VkPipelineRasterizationStateCreateInfo rs = {VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO};
    rs.polygonMode = VK_POLYGON_MODE_FILL;
    rs.cullMode = VK_CULL_MODE_NONE;
    rs.frontFace = VK_FRONT_FACE_COUNTER_CLOCKWISE;
    rs.lineWidth = 1.0f;
    VkPipelineMultisampleStateCreateInfo ms = {VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO};
    ms.rasterizationSamples = VK_SAMPLE_COUNT_1_BIT;
    VkPipelineColorBlendAttachmentState cba = {0};
    cba.colorWriteMask = 0xF;
    VkPipelineColorBlendStateCreateInfo cb = {VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO};
    cb.attachmentCount = 1;
    cb.pAttachments = &cba;
    VkGraphicsPipelineCreateInfo gpi = {VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO};
    gpi.stageCount = 2;
    gpi.pStages = stages;
    gpi.pVertexInputState = &vin;
    gpi.pInputAssemblyState = &ia;
    gpi.pViewportState = &vps;
    gpi.pRasterizationState = &rs;
    gpi.pMultisampleState = &ms;
    gpi.pColorBlendState = &cb;
    gpi.layout = glayout;
    gpi.renderPass = pass;
    VkPipeline gpipe;
    CHECK(vkCreateGraphicsPipelines(dev, VK_NULL_HANDLE, 1, &gpi, NULL, &gpipe));

    /* compute pipeline with its counter buffer */
    VkDescriptorSetLayoutBinding bind = {0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    VkDescriptorSetLayoutCreateInfo dli = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, 1, &bind};
    VkDescriptorSetLayout dsl;
    CHECK(vkCreateDescriptorSetLayout(dev, &dli, NULL, &dsl));
    VkPipelineLayoutCreateInfo cli = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 1, &dsl, 0, NULL};
    VkPipelineLayout clayout;
    CHECK(vkCreatePipelineLayout(dev, &cli, NULL, &clayout));
    VkShaderModule cs = shader(dev, comp_spv, sizeof comp_spv);
    VkComputePipelineCreateInfo cpi = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, NULL, 0,
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_COMPUTE_BIT, cs, "main", NULL},
        clayout, VK_NULL_HANDLE, 0};
    VkPipeline cpipe;
    CHECK(vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpi, NULL, &cpipe));
    VkDeviceMemory cmem, imemo, ibmem, rbmem;
    void *cmap, *imap, *ibmap, *rbmap;
    VkBuffer counter = make_buffer(dev, phys, 16, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, &cmem, &cmap);
    memset(cmap, 0, 16);
    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1};
    VkDescriptorPoolCreateInfo dpi = {VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, NULL, 0, 1, 1, &ps};
    VkDescriptorPool dpool;
    CHECK(vkCreateDescriptorPool(dev, &dpi, NULL, &dpool));
    VkDescriptorSetAllocateInfo dsa = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, NULL, dpool, 1, &dsl};
    VkDescriptorSet set;
    CHECK(vkAllocateDescriptorSets(dev, &dsa, &set));
    VkDescriptorBufferInfo dbi = {counter, 0, 16};
    VkWriteDescriptorSet wds = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, NULL, set, 0, 0, 1,
                                VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, NULL, &dbi, NULL};
    vkUpdateDescriptorSets(dev, 1, &wds, 0, NULL);

    /* index, indirect and readback buffers */
    uint32_t n_idx = 3u * (uint32_t)triangles;
    VkBuffer ibuf = make_buffer(dev, phys, 4 * n_idx + 4, VK_BUFFER_USAGE_INDEX_BUFFER_BIT, &ibmem, &ibmap);
    for (uint32_t i = 0; i < n_idx; i++) ((uint32_t *)ibmap)[i] = i;
    VkBuffer indbuf = make_buffer(dev, phys, sizeof(VkDrawIndirectCommand), VK_BUFFER_USAGE_INDIRECT_BUFFER_BIT, &imemo, &imap);
    *(VkDrawIndirectCommand *)imap = (VkDrawIndirectCommand){3u * (uint32_t)triangles, (uint32_t)instances, 0, 0};
    VkBuffer rb = make_buffer(dev, phys, W * H * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT, &rbmem, &rbmap);
    /* the transform-feedback counter a byte-count draw reads: 3 vertices per triangle, 16 bytes each */
    VkDeviceMemory ctrmem = VK_NULL_HANDLE;
    void *ctrmap = NULL;
    VkBuffer ctrbuf = bytecount > 0 ? make_buffer(dev, phys, 16, VK_BUFFER_USAGE_TRANSFORM_FEEDBACK_COUNTER_BUFFER_BIT_EXT,
                                                  &ctrmem, &ctrmap) : VK_NULL_HANDLE;
    if (ctrmap) *(uint32_t *)ctrmap = 3u * (uint32_t)triangles * 16u;

    VkCommandPoolCreateInfo cpci = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL,
                                    VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, family};
    VkCommandPool pool;
    CHECK(vkCreateCommandPool(dev, &cpci, NULL, &pool));
    VkCommandBufferAllocateInfo cbai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, pool,
                                        VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    VkCommandBuffer cmd;
    CHECK(vkAllocateCommandBuffers(dev, &cbai, &cmd));
    VkFenceCreateInfo fci = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkFence fence;
    CHECK(vkCreateFence(dev, &fci, NULL, &fence));

    double record_ns_per_draw = 0.0, frame_ms = 0.0;
    if (bench > 0) { /* recording cost of vkCmdDraw through whatever layers are loaded */
        VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                       VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
        double best = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            CHECK(vkBeginCommandBuffer(cmd, &bi));
            VkClearValue clear = {{{0.0f, 0.0f, 0.0f, 1.0f}}};
            VkRenderPassBeginInfo rbi = {VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, NULL, pass, fb, sc, 1, &clear};
            vkCmdBeginRenderPass(cmd, &rbi, VK_SUBPASS_CONTENTS_INLINE);
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, gpipe);
            /* timed in batches, the fastest kept: on a shared machine most batches are preempted */
            for (long i = 0; i < bench; i += BENCH_BATCH) {
                double t0 = now_s();
                for (int j = 0; j < BENCH_BATCH; j++) vkCmdDraw(cmd, 3, 1, 0, 0);
                double dt = (now_s() - t0) / BENCH_BATCH;
                if (dt < best) best = dt;
            }
            vkCmdEndRenderPass(cmd);
            CHECK(vkEndCommandBuffer(cmd));
            CHECK(vkResetCommandBuffer(cmd, 0));
        }
        record_ns_per_draw = best * 1e9;
    }

    double t_frames = now_s();
    double submit_s = 1e9; /* fastest vkQueueSubmit: where the layer closes and writes a frame */
    double *frame_s = calloc(frames > 0 ? (size_t)frames : 1, sizeof *frame_s);
    for (int f = 0; f < frames; f++) {
        double t_frame = now_s();
        VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                       VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
        CHECK(vkBeginCommandBuffer(cmd, &bi));
        VkClearValue clear = {{{0.0f, 0.0f, 0.0f, 1.0f}}};
        VkRenderPassBeginInfo rbi = {VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, NULL, pass, fb, sc, 1, &clear};
        vkCmdBeginRenderPass(cmd, &rbi, VK_SUBPASS_CONTENTS_INLINE);
        vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_GRAPHICS, gpipe);
        for (int i = 0; i < draws; i++) vkCmdDraw(cmd, 3u * (uint32_t)triangles, (uint32_t)instances, 0, 0);
        vkCmdBindIndexBuffer(cmd, ibuf, 0, VK_INDEX_TYPE_UINT32);
        for (int i = 0; i < indexed; i++) vkCmdDrawIndexed(cmd, n_idx, (uint32_t)instances, 0, 0, 0);
        for (int i = 0; i < indirect; i++) vkCmdDrawIndirect(cmd, indbuf, 0, 1, sizeof(VkDrawIndirectCommand));
        for (int i = 0; i < bytecount; i++) draw_byte_count(cmd, (uint32_t)instances, 0, ctrbuf, 0, 0, 16);
        vkCmdEndRenderPass(cmd);
        if (dispatches > 0) {
            vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, cpipe);
            vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, clayout, 0, 1, &set, 0, NULL);
            for (int i = 0; i < dispatches; i++) vkCmdDispatch(cmd, (uint32_t)groups, 1, 1);
        }
        VkBufferImageCopy copy = {0, 0, 0, {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1}, {0, 0, 0}, {W, H, 1}};
        vkCmdCopyImageToBuffer(cmd, image, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, rb, 1, &copy);
        VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL,
                              VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT, VK_ACCESS_HOST_READ_BIT};
        vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                             VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
        CHECK(vkEndCommandBuffer(cmd));
        VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO, NULL, 0, NULL, NULL, 1, &cmd, 0, NULL};
        double t_submit = now_s();
        CHECK(vkQueueSubmit(queue, 1, &si, fence));
        t_submit = now_s() - t_submit;
        if (t_submit < submit_s) submit_s = t_submit;
        CHECK(vkWaitForFences(dev, 1, &fence, VK_TRUE, UINT64_MAX));
        CHECK(vkResetFences(dev, 1, &fence));
        frame_s[f] = now_s() - t_frame;
    }
    frame_ms = frames ? (now_s() - t_frames) * 1e3 / frames : 0.0;
    qsort(frame_s, frames > 0 ? (size_t)frames : 0, sizeof *frame_s, by_value);
    double frame_ms_median = frames ? frame_s[frames / 2] * 1e3 : 0.0; /* robust to preemption */
    double frame_ms_min = frames ? frame_s[0] * 1e3 : 0.0;
    free(frame_s);

    uint64_t fnv = 1469598103934665603ULL;
    for (size_t i = 0; i < (size_t)W * H * 4; i++) fnv = (fnv ^ ((uint8_t *)rbmap)[i]) * 1099511628211ULL;
    uint32_t counted = *(uint32_t *)cmap;
    printf("{\"frames\": %d, \"draws\": %d, \"triangles\": %d, \"instances\": %d, \"indexed\": %d, \"indirect\": %d, "
           "\"dispatches\": %d, \"groups\": %d, \"image_fnv\": \"%016llx\", \"counter\": %u, \"validation_errors\": %d, "
           "\"validation_warnings\": %d, \"record_ns_per_draw\": %.3f, \"frame_ms\": %.4f, \"frame_ms_median\": %.4f, \"frame_ms_min\": %.4f, \"submit_us_min\": %.3f, "
           "\"debug_utils\": %d, \"bytecount\": %d}\n",
           frames, draws, triangles, instances, indexed, indirect, dispatches, groups, (unsigned long long)fnv,
           counted, g_errors, g_warnings, record_ns_per_draw, frame_ms, frame_ms_median, frame_ms_min,
           frames ? submit_s * 1e6 : 0.0, debug_utils, bytecount);
    fflush(stdout);
    if (hold) { /* keep the instance (and the layer's ring) alive until the reader is done */
        char line[16];
        if (!fgets(line, sizeof line, stdin)) line[0] = 0;
    }

    vkDestroyFence(dev, fence, NULL);
    vkDestroyCommandPool(dev, pool, NULL);
    vkDestroyBuffer(dev, rb, NULL);
    if (ctrbuf != VK_NULL_HANDLE) { vkDestroyBuffer(dev, ctrbuf, NULL); vkFreeMemory(dev, ctrmem, NULL); }
    vkDestroyBuffer(dev, indbuf, NULL);
    vkDestroyBuffer(dev, ibuf, NULL);
    vkDestroyBuffer(dev, counter, NULL);
    vkFreeMemory(dev, rbmem, NULL);
    vkFreeMemory(dev, imemo, NULL);
    vkFreeMemory(dev, ibmem, NULL);
    vkFreeMemory(dev, cmem, NULL);
    vkDestroyDescriptorPool(dev, dpool, NULL);
    vkDestroyPipeline(dev, cpipe, NULL);
    vkDestroyPipeline(dev, gpipe, NULL);
    vkDestroyShaderModule(dev, cs, NULL);
    vkDestroyShaderModule(dev, vs, NULL);
    vkDestroyShaderModule(dev, fs, NULL);
    vkDestroyPipelineLayout(dev, clayout, NULL);
    vkDestroyPipelineLayout(dev, glayout, NULL);
    vkDestroyDescriptorSetLayout(dev, dsl, NULL);
    vkDestroyFramebuffer(dev, fb, NULL);
    vkDestroyRenderPass(dev, pass, NULL);
    vkDestroyImageView(dev, view, NULL);
    vkDestroyImage(dev, image, NULL);
    vkFreeMemory(dev, imem, NULL);
    vkDestroyDevice(dev, NULL);
    if (messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger =
            (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(inst, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy_messenger) destroy_messenger(inst, messenger, NULL);
    }
    vkDestroyInstance(inst, NULL);

    return 0;
}
