#version 450
// One small triangle per (vertex/3, instance), placed on a grid so every draw touches pixels.
layout(location = 0) out vec3 colour;
void main() {
    int tri = gl_VertexIndex / 3, corner = gl_VertexIndex % 3, cell = tri * 7 + gl_InstanceIndex * 13;
    vec2 origin = vec2(float(cell % 16), float((cell / 16) % 16)) / 8.0 - 1.0;
    vec2 offsets[3] = vec2[](vec2(0.0, 0.0), vec2(0.12, 0.0), vec2(0.0, 0.12));
    gl_Position = vec4(origin + offsets[corner], 0.0, 1.0);
    colour = vec3(float(tri % 5) / 4.0, float(gl_InstanceIndex % 3) / 2.0, 0.5);
}
