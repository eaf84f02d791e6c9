"""Train the thermal person-location models and convert them to full-integer int8 TFLite.

Needs TensorFlow, which the agent itself never imports: install the ``train`` extra
(``pip install -e '.[train]'``, i.e. tensorflow-cpu), then::

    python models/train_thermal.py                 # both sensors → models/thermal_<sensor>.tflite
    python models/train_thermal.py --sensor amg8833 --epochs 12

Data: synthetic sequences from :mod:`edgeagent.models.synth` (training seeds < 9000; the
evaluation's held-back test set starts at 9000), replayed through the same
:class:`~edgeagent.counting.thermal.ThermalBackground` the counter uses, so the model sees
exactly the foreground it will see on the device. Input: :func:`~edgeagent.counting.thermal.
cnn_input`; target: a heat map with a Gaussian bump at every head in view. Seeded; prints
its figures.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeagent.counting.thermal import PROFILES, ThermalBackground, cnn_input
from edgeagent.models import synth

HERE = Path(__file__).resolve().parent
TRAIN_SEED = 1000  # sequences use seeds TRAIN_SEED + i (< evaluate.TEST_SEED = 9000)
#: heat-map grid (rows, cols) and Gaussian sigma of a head in heat-map pixels
HEATMAP = {"amg8833": ((8, 8), 0.7), "mlx90640": ((24, 32), 1.2)}
COARSE_MLX = ((12, 16), 0.8)  # --coarse-mlx: half-resolution heat map


def heatmap(points: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Target heat map: max over heads of a Gaussian at the head (frame units → grid)."""
    rows, cols = shape
    gr, gc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for x, y in points:
        r, c = y * rows - 0.5, x * cols - 0.5
        out = np.maximum(out, np.exp(-((gr - r) ** 2 + (gc - c) ** 2) / (2 * sigma ** 2)))
    return out


def samples(sensor: str, n_sequences: int, rng: np.random.Generator, stride: int = 1,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and target heat maps from synthetic sequences seen through the background.

    Every frame goes through the background (as on the device); every ``stride``-th becomes a
    sample (neighbouring frames are nearly the same).
    """
    profile = PROFILES[sensor]
    shape, sigma = HEATMAP[sensor]
    xs, ys = [], []
    for i in range(n_sequences):
        category = synth.CATEGORIES[i % len(synth.CATEGORIES)]
        seq = synth.make_sequence(sensor, category, TRAIN_SEED + i)
        background = ThermalBackground(profile.shape, mask_c=profile.mask_c)
        previous = None
        for k, (frame, t) in enumerate(zip(seq.frames, seq.t, strict=True)):
            fg = background.update(frame, float(t))
            if not background.ready:
                continue
            prev = fg if previous is None else previous
            previous = fg
            people = seq.positions[k]
            # keep a quarter of the empty frames
            if k % stride or (len(people) == 0 and rng.random() > 0.25):
                continue
            xs.append(cnn_input(fg, prev, frame))
            ys.append(heatmap(people, shape, sigma))
    return np.stack(xs), np.stack(ys)[..., None]


def build(sensor: str):
    """A small fully convolutional heat-map network (a few thousand parameters)."""
    import keras
    from keras import layers

    rows, cols = PROFILES[sensor].shape
    inp = keras.Input((rows, cols, 3))
    if sensor == "amg8833":  # 8×8 in, 8×8 out, receptive field 7×7
        x = layers.Conv2D(12, 3, padding="same", activation="relu")(inp)
        x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    else:  # 24×32 in, receptive field ~19 pixels at half resolution
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
        x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
        x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(16, 3, padding="same", dilation_rate=2, activation="relu")(x)
        if HEATMAP[sensor][0] == (rows, cols):  # back to full resolution (close heads)
            x = layers.UpSampling2D(2)(x)
            x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    out = layers.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inp, out, name=f"thermal_{sensor}")


def weighted_mse(y_true, y_pred):
    """Squared error, heads weighted up (most pixels are empty floor)."""
    import tensorflow as tf

    return tf.reduce_mean(tf.square(y_true - y_pred) * (1.0 + 15.0 * y_true))


def convert(model, representative: np.ndarray, path: Path) -> int:
    """Full-integer int8 conversion (int8 input and output); returns the file size."""
    import tensorflow as tf

    def dataset():
        for x in representative:
            yield [x[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    blob = converter.convert()
    path.write_bytes(blob)
    return len(blob)


def train(sensor: str, n_sequences: int, epochs: int, seed: int, out_dir: Path) -> None:
    """Generate data, train, convert, and print the figures of one sensor's model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    x, y = samples(sensor, n_sequences, rng, stride=1 if sensor == "amg8833" else 2)
    # flips are valid scenes too (both walking directions, both sides)
    x = np.concatenate([x, x[:, ::-1], x[:, :, ::-1]])
    y = np.concatenate([y, y[:, ::-1], y[:, :, ::-1]])
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.9 * len(x))
    print(f"{sensor}: {len(x)} samples from {n_sequences} sequences "
          f"({time.perf_counter() - started:.0f} s)")
    model = build(sensor)
    print(f"{sensor}: {model.count_params()} parameters")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=weighted_mse)
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch: 3e-3 * 0.5 * (1 + math.cos(math.pi * epoch / epochs)))
    fit = model.fit(x[:split], y[:split], validation_data=(x[split:], y[split:]),
                    batch_size=256, epochs=epochs, verbose=2, callbacks=[schedule])
    print(f"{sensor}: val loss {fit.history['val_loss'][-1]:.5f} "
          f"({time.perf_counter() - started:.0f} s)")
    path = out_dir / f"thermal_{sensor}.tflite"
    size = convert(model, x[rng.choice(split, 500, replace=False)], path)
    print(f"{sensor}: wrote {path} ({size} bytes)")
    from edgeagent.inference import load_model  # check the int8 model against the float one

    tfl = load_model(path)
    probe = x[split:split + 200]
    q = np.stack([tfl.run(p[None])[0] for p in probe])
    f = model.predict(probe, verbose=0)
    print(f"{sensor}: int8 vs float heat map max |diff| {np.abs(q - f).max():.3f}, "
          f"mean {np.abs(q - f).mean():.4f} ({tfl.runtime})")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sensor", choices=sorted(PROFILES), action="append")
    parser.add_argument("--sequences", type=int, default=None,
                        help="training sequences per sensor (default 120 / 80)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--coarse-mlx", action="store_true",
                        help="MLX90640 heat map at half resolution (12×16)")
    args = parser.parse_args(argv)
    if args.coarse_mlx:
        HEATMAP["mlx90640"] = COARSE_MLX
    for sensor in args.sensor or sorted(PROFILES):
        n = args.sequences or (120 if sensor == "amg8833" else 80)
        train(sensor, n, args.epochs, args.seed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
