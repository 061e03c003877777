"""The seeds' other systems as trainable families (issue 13), next to today's `late` two-stream.

One module per concern:
  data.py        window sampling for every input kind (frame, flow_stack, clip, frame_stack), TSN segments
  convfusion.py  two Lite0 towers fused at the last conv layer (Feichtenhofer et al. 2016)
  motion.py      Tiny-MotionNet and its unsupervised losses (Zhu et al. 2017, Hidden Two-Stream)
  hidden.py      MotionNet stacked under the temporal Lite0: frame_stack -> logits
  i3d.py         ImageNet Lite0 inflated to 3D (Carreira & Zisserman 2017), exported as exact 2D ops
  r2plus1d.py    torchvision R(2+1)D-18 from scratch (the control for the inflation claim)
  registry.py    FAMILIES: name -> inputs, builder, training hooks
  loop.py        the training loop shared by the families
  export.py      ONNX export of multi-input graphs, parity, int8, bundle format 2 description
  evaluate.py    clip accuracy through the exported ONNX graphs (25 windows per video, as `twostream eval`)
  bench.py       params, GFLOPs, ONNX Runtime ms/window
The runtime never imports this package (layering: train is above engines and stream.core).
"""
