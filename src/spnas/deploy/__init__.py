"""Getting a trained network out: ONNX export and the ONNX files' I/O."""
