"""tf.data input: parse clip records, decode, sample, augment and batch for model.fit."""
