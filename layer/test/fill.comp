#version 450
// Each invocation adds one to a counter: the host checks dispatches really ran.
layout(local_size_x = 8) in;
layout(std430, binding = 0) buffer Counter { uint value; } counter;
void main() { atomicAdd(counter.value, 1u); }
