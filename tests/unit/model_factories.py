"""User model factories for the tests of ``ModelSpec(kind="custom", factory=...)``."""

import keras


def binary_3() -> keras.Model:
    inputs = keras.Input(shape=(3,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))


def wrong_width() -> keras.Model:
    inputs = keras.Input(shape=(5,))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))


def three_outputs() -> keras.Model:
    inputs = keras.Input(shape=(3,))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))


def linear_output() -> keras.Model:
    inputs = keras.Input(shape=(3,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def not_a_model() -> str:
    return "a model"
