"""The one progress bar (genaug.progress.progress_bar)."""

from __future__ import annotations

from genaug.progress import progress_bar


def test_a_disabled_or_empty_bar_is_a_no_op_with_the_same_methods():
    for kwargs in ({"enabled": False}, {"total": 0}):
        with progress_bar(**{"total": 5, "description": "x", **kwargs}) as bar:
            bar.advance(2, loss=1.0)
            bar.update(completed=3, description="y")
            assert not bar.shown and bar.completed == 0


def test_a_shown_bar_counts_from_where_it_resumed_and_measures_the_rate():
    with progress_bar(10, "mix concat", completed=4, unit="images", detail="{task.fields[note]}", fields={"note": ""},
                      transient=True) as bar:
        assert bar.shown and bar.completed == 4
        bar.advance(3, note="ok")
        task = bar._progress.tasks[0]
        assert task.completed == 7 and task.fields["note"] == "ok" and task.fields["rate"] > 0
        bar.update(completed=10)
        assert bar.completed == 10
