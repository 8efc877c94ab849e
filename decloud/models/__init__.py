"""Models: the abstract ``Model``, the registry of architectures, metrics and losses, training from
TFRecords with ``tf.distribute``, evaluation against baselines, SavedModel and ONNX export."""
