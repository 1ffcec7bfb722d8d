r"""Train a TEA-DNN cell network (or DenseNet-40) on CIFAR-10 or your own image folder
(``--dataset=folder --data_dir=DIR``): ``python -m tea_keras.train``.

Examples::

  # search-time recipe (paper IV-A) on the bundled sample, a random cell:
  python -m tea_keras.train --dataset=cifar10_sample --genotype=random --seed=1 \
      --num_cells=1 --filters=16 --epochs=10 --model_dir=runs/sample
  # the paper's final training (V-C) of a found cell on the full CIFAR-10:
  python -m tea_keras.train --flagfile=flags/final_train.cfg \
      --genotype='sep3x3(prev)+max3x3(prev_prev); ...' --data_dir=DIR --model_dir=DIR

``--recipe`` picks the preset (``search`` or ``final``); every field of
``tea_keras.recipes.Recipe`` is also a flag of the same name that overrides it.
Re-running the same command with the same ``--model_dir`` resumes; other
settings are refused, naming only those that differ. The run prints the cell
it trains first (the one drawn, with ``--genotype=random``) and keeps
TensorFlow's native log lines off the console (``tea_keras.console``).
``--train_images=N`` trains on the first N training images only. Only
``main`` reads flags; the work is done by ``tea_keras.training``.
"""

import dataclasses
import json
import os
import sys
import typing

from absl import app
from absl import flags

from tea_keras import console
from tea_keras import data
from tea_keras import errors
from tea_keras import recipes
from tea_keras import space

FLAGS = flags.FLAGS
MODELS = ("cell", "densenet40")

def define_flags(flag_values=FLAGS) -> None:
  """Define this CLI's flags on ``flag_values`` (done when run as a program;
  tests pass a fresh ``flags.FlagValues()`` so no global flags clash)."""
  fv = dict(flag_values=flag_values)
  flags.DEFINE_string("genotype", None, "Cell to train: a genotype string, a name from "
                      "tea_keras.space.NAMED, or 'random' (seeded by --seed). Required "
                      "with --model=cell.", **fv)
  flags.DEFINE_enum("model", "cell", MODELS, "Network: the TEA-DNN cell network or "
                    "the DenseNet-40 baseline.", **fv)
  flags.DEFINE_enum("recipe", "search", sorted(recipes.RECIPES), "Training preset "
                    "(tea_keras.recipes): search (paper IV-A) or final (V-C).", **fv)
  flags.DEFINE_enum("dataset", "cifar10", list(data.NAMES), "Data set: CIFAR-10, the "
                    "bundled CIFAR-10 sample, or your own images (folder, with --data_dir).",
                    **fv)
  flags.DEFINE_string("data_dir", None, "--dataset=cifar10: a cifar-10-batches-py folder (or "
                      "its parent; default: the Keras cache/download). --dataset=folder "
                      "(required): one sub-folder of images per class, or train/<class>/ "
                      "and test/<class>/ (tea_keras.data.read_image_folder).", **fv)
  flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, TensorBoard logs, "
                      "config.json, metrics.json, model.keras. Required.", **fv)
  flags.DEFINE_integer("seed", 0, "Seed of --genotype=random, weight init and data "
                       "order.", **fv)
  flags.DEFINE_integer("split_seed", 0, "Seed of the train/validation split (keep it "
                       "fixed to compare runs).", **fv)
  flags.DEFINE_integer("train_images", None, "Train on the first N training images only "
                       "(default: all), as search.run's --train_images.", lower_bound=1, **fv)
  flags.DEFINE_bool("evaluate_test", True, "Also report the test error at the end.", **fv)
  flags.DEFINE_integer("verbose", 1, "0: quiet, 1: one line per epoch with ETA, 2: and "
                       "a progress bar.", **fv)
  _define_recipe_flags(flag_values)


def _define_recipe_flags(flag_values):
  """One flag per Recipe field, default None = the preset's value."""
  hints = typing.get_type_hints(recipes.Recipe)
  for field in dataclasses.fields(recipes.Recipe):
    kind = hints[field.name]
    text = field.metadata["help"] + " Default: the --recipe preset's value."
    if kind is int:
      flags.DEFINE_integer(field.name, None, text, flag_values=flag_values)
    elif kind is float:
      flags.DEFINE_float(field.name, None, text, flag_values=flag_values)
    elif kind is bool:
      flags.DEFINE_bool(field.name, None, text, flag_values=flag_values)
    elif kind == typing.Optional[bool]:
      flags.DEFINE_enum(field.name, None, ["auto", "true", "false"], text,
                        flag_values=flag_values)
    elif kind == typing.Optional[float]:
      flags.DEFINE_string(field.name, None, text + " A number or 'none'.",
                          flag_values=flag_values)
    else:
      raise TypeError("Recipe field %s has unsupported type %r" % (field.name, kind))


def recipe_from_flags(flag_values) -> recipes.Recipe:
  """The ``--recipe`` preset with every set recipe flag applied."""
  hints = typing.get_type_hints(recipes.Recipe)
  overrides = {}
  for name in recipes.field_names():
    value = flag_values[name].value
    if value is None:
      continue
    if hints[name] == typing.Optional[bool]:
      value = {"auto": None, "true": True, "false": False}[value]
    elif hints[name] == typing.Optional[float]:
      value = None if value.lower() == "none" else _to_float(name, value)
    overrides[name] = value
  return recipes.RECIPES[flag_values.recipe](**overrides)


def _to_float(name, text):
  try:
    return float(text)
  except ValueError:
    raise ValueError(errors.message("--" + name, "a number or 'none'", text,
                                    noun="flag")) from None


def run(flag_values):
  """Validate the flags, load data, train; returns the TrainResult."""
  recipe = recipe_from_flags(flag_values)
  if not flag_values.model_dir:
    raise ValueError("Missing --model_dir. Expected a run directory to write "
                     "checkpoints and metrics into (re-use it to resume).")
  genotype = None
  if flag_values.model == "cell":
    if not flag_values.genotype:
      raise ValueError("Missing --genotype. Expected a genotype string, one of %s, or "
                       "'random' (with --model=cell)." % ", ".join(sorted(space.NAMED)))
    genotype = space.resolve(flag_values.genotype, flag_values.seed)
  if flag_values.verbose:
    print(_describe_model(flag_values, recipe, genotype), flush=True)
  splits = data.load(flag_values.dataset, flag_values.data_dir, seed=flag_values.split_seed)
  if flag_values.train_images:
    splits = dataclasses.replace(splits, x_train=splits.x_train[:flag_values.train_images],
                                 y_train=splits.y_train[:flag_values.train_images])
  data.check_splits(splits, min_train=recipe.batch_size)
  evaluate_test = flag_values.evaluate_test and len(splits.y_test) > 0
  if flag_values.evaluate_test and not evaluate_test:
    print("tea_keras.train: notice: %s has no test split (no test/ folder); no test error."
          % splits.source)
  from tea_keras import training  # pylint: disable=g-import-not-at-top  (imports TF)
  extra = {"split_seed": flag_values.split_seed, "model": flag_values.model,
           "data_dir": flag_values.data_dir}
  kwargs = dict(evaluate_test=evaluate_test, verbose=flag_values.verbose,
                seed=flag_values.seed, extra_config=extra)
  _check_same_run(flag_values, recipe, genotype, splits, training.RESUMABLE_CHANGES)
  if genotype is not None:
    return training.train_genotype(genotype, recipe, splits, flag_values.model_dir,
                                   **kwargs)
  import keras  # pylint: disable=g-import-not-at-top
  from tea_keras import densenet  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(flag_values.seed)
  model = densenet.build_densenet40(num_classes=splits.num_classes,
                                    weight_decay=recipe.weight_decay)
  return training.train_model(model, recipe, splits, flag_values.model_dir, **kwargs)


def _describe_model(flag_values, recipe, genotype):
  """The line naming what this run trains (the drawn cell with --genotype=random)."""
  if genotype is None:
    return "tea_keras.train: model %s" % flag_values.model
  how = flag_values.genotype
  if how == "random":
    how = "random, drawn with --seed=%d" % flag_values.seed
  elif how in space.NAMED:
    how = "named %s" % how
  else:
    how = "given"
  return ("tea_keras.train: genotype (%s): %s; N=%d cells per stage, F=%d filters"
          % (how, genotype.to_string(), recipe.num_cells, recipe.filters))


def _flatten(config, prefix=""):
  """``{"recipe": {"epochs": 2}}`` -> ``{"recipe.epochs": 2}``."""
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(_flatten(value, prefix + key + "."))
    else:
      out[prefix + key] = value
  return out


def _check_same_run(flag_values, recipe, genotype, splits, resumable):
  """Refuse, naming only the settings that differ, to resume a model_dir
  whose checkpoint was trained with other settings (``tea_keras.training``
  checks the full config.json again when it starts)."""
  run_dir = flag_values.model_dir
  path = os.path.join(run_dir, "config.json")
  if not (os.path.exists(path) and
          os.path.exists(os.path.join(run_dir, "checkpoints", "state.json"))):
    return
  with open(path) as f:
    saved = _flatten(json.load(f))
  now = {"recipe": recipe.to_dict(), "dataset": splits.name, "seed": flag_values.seed,
         "data_sizes": splits.sizes(), "split_seed": flag_values.split_seed,
         "model": flag_values.model,
         "steps_per_epoch": data.steps_per_epoch(len(splits.x_train), recipe.batch_size)}
  if genotype is not None:
    now.update(genotype=genotype.to_string(), num_cells=recipe.num_cells,
               filters=recipe.filters)
  now = _flatten(json.loads(json.dumps(now)))
  differ = [k for k in sorted(now) if k.split(".")[-1] not in resumable
            and saved.get(k) != now[k]]
  if differ:
    raise ValueError(
        "--model_dir=%s holds a checkpoint of another run; these settings differ (saved -> "
        "now): %s. Use the same settings to resume, or a new --model_dir."
        % (run_dir, "; ".join("%s %s -> %s" % (k, _show(saved.get(k)), _show(now[k]))
                              for k in differ)))


def _show(value):
  return "unset" if value is None else json.dumps(value)


def main(argv):
  console.quiet_native_logs()
  if len(argv) > 1:
    sys.exit("tea_keras.train: error: unexpected arguments %s; expected only --flags."
             % " ".join(argv[1:]))
  try:
    result = run(FLAGS)
  except (ValueError, ImportError) as e:
    sys.exit("tea_keras.train: error: %s" % e)
  if result.diverged:
    print("tea_keras.train: training diverged: %s (recorded in metrics.json)" % result.error)


if __name__ == "__main__":
  define_flags()
  app.run(main)
