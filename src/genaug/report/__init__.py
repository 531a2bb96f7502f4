"""The experiment report: one static HTML page, with its images beside it, readable offline.

``write_report(run_dir)`` reads a finished (or partly finished) experiment run folder and
writes ``run_dir/report/index.html`` with ``figures/*.png`` and ``samples/*.png`` next to
it. Every path in the page is relative, nothing is fetched from the network, and every
string that came from the data (class names, arm names, descriptions, prompts) is
HTML-escaped. A section whose data the run lacks is left out.

The run folder (the contract between the experiment runner and this report)::

    RUN_DIR/
      experiment.yaml          the resolved experiment config: ``name:``, and ``dataset:`` with the
                               fields of genaug.data.config.DatasetConfig (used to load the real images)
      results.json             summary, below
      results.csv              one row per arm (the same numbers)
      artifacts/<kind>-<key>/  stage outputs. Synthetic sets (generate / mix / sdi / filter outputs)
                               are folders with manifest.jsonl + images/, read with
                               genaug.manifest.read_manifest (SampleRecord: id, path relative to the
                               set, label, class_name, method, source_ids (real dataset ids, or ids
                               in another set), params (SHB: "heatmap" = path of a PNG relative to
                               the set, "replaced_fraction"), embedding, scores, kept). An SDI work
                               folder holds the feature tables genaug.sdi.sample.bank_path(work_dir)
                               (real features, projected) and genaug.sdi.sample.samples_path(work_dir,
                               sampler) (sampled features), read with genaug.sdi.tables.load_table.
                               A stage's ``dir`` may be the set / work folder itself or hold them
                               one level down (the mix stage writes one set per method).
      arms/<arm>/seed-<s>/     trainer run folders: metrics.csv (epoch, lr, train_loss, train_top1,
                               val_loss, val_top1, [val_top5], val_balanced_accuracy, [test_*],
                               real_samples, synthetic_samples, epoch_seconds, samples_per_second)
                               and metrics.json (genaug.training.trainer.RunResult)
      report/                  written here: index.html + figures/*.png + samples/*.png

``results.json`` (accuracies in percent)::

    {"experiment": str, "created": iso8601, "seeds": [int], "baseline": arm name,
     "dataset": {"name", "num_classes", "class_names": [str], "train", "val", "test"},
     "epochs": int,
     "arms": [{"name", "description",
               "policy": {"name", "kwargs"},      # curriculum: kwargs["schedule"] + the schedule's own
               "mixer": {"name", "kwargs"},
               "stages": [{"kind": "generate"|"mix"|"sdi"|"filter", "method", "dir" (relative),
                           "cached", "seconds", "images", "images_per_second"}],
               "synthetic_set": relative dir | null,
               "runs": [{"seed", "dir" (relative), "top1", "balanced_accuracy",
                         "real_samples", "synthetic_samples", "train_seconds"}],
               "top1_mean", "top1_std", "balanced_accuracy_mean", "balanced_accuracy_std",
               "delta_top1", "delta_balanced_accuracy", "real_samples", "synthetic_samples",
               "generation_seconds", "train_seconds", "images_per_second" | null,
               "set_metrics": {"fd", "precision", "recall", "density", "coverage", "fidelity_clip",
                               "fidelity_classifier", "diversity", "fidelity_clip_real", "diversity_real",
                               "clip": {"id", ...}, "classifier": run dir | null, "k", ...}  # arms with data
               "budget": {"synthetic_per_real", "seed", "images", "per_class", "dir"}}]}  # parity arms
"""

from genaug.report.build import write_report

__all__ = ["write_report"]
