"""Does a torch thread pool that just worked, in the same process, slow onnxruntime (1 thread)?"""
import statistics, sys, time
mode, model = sys.argv[1], sys.argv[2]
if mode != "fresh":
    import torch
    torch.set_num_threads(2)
    if mode == "torch-busy":
        conv = torch.nn.Conv2d(32, 32, 3, padding=1)
        x = torch.randn(64, 32, 28, 28)
        end = time.time() + 3
        with torch.no_grad():
            while time.time() < end:
                conv(x)
import numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name; x = np.random.rand(1, 1, 28, 28).astype(np.float32)
for _ in range(20): s.run(None, {name: x})
t = []
for _ in range(600):
    a = time.perf_counter(); s.run(None, {name: x}); t.append((time.perf_counter() - a) * 1e3)
print(f"{mode:11s} median {statistics.median(t):.4f} ms  first100 {statistics.median(t[:100]):.4f}")
