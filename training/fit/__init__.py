"""Fitting a model: TensorFlow set-up, the tf.data input pipeline and augmentation, optimizers and schedules,
callbacks, the training loop and hyperparameter search."""
