"""The HTML page: one jinja2 template with its CSS inline, rendered with autoescape on.

The template lives in this module (not in a separate file) so that it ships with the
package whatever the install path. Every value from the run reaches the page through a
``{{ }}`` expression and is escaped; only the page's own CSS is marked safe. The page links
nothing outside its folder: no CDN, no web fonts, relative image paths only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from genaug.files import write_text_atomic

CSS = """
:root { --ink:#1f2933; --muted:#62707f; --line:#e2e6eb; --panel:#ffffff; --page:#f3f5f8;
        --accent:#2456c7; --good:#137a3d; --bad:#b42318; }
* { box-sizing: border-box; }
body { margin:0; background:var(--page); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background:#1c2736; color:#fff; padding:26px 0 20px; }
.wrap { max-width:1200px; margin:0 auto; padding:0 28px; }
header h1 { margin:0 0 6px; font-size:26px; font-weight:650; letter-spacing:-0.01em; }
header .meta { color:#c9d3df; font-size:14px; }
header .meta span + span::before { content:"·"; margin:0 8px; color:#7d8a99; }
header .finding { margin-top:12px; font-size:15px; }
nav { margin-top:14px; font-size:13.5px; }
nav a { color:#d6e2ff; text-decoration:none; margin-right:16px; }
nav a:hover { text-decoration:underline; }
section { background:var(--panel); border:1px solid var(--line); border-radius:10px;
          padding:20px 24px 22px; margin:22px 0; }
h2 { margin:0 0 4px; font-size:19px; }
h3 { margin:18px 0 6px; font-size:15px; }
p.lead { margin:0 0 14px; color:var(--muted); font-size:13.5px; }
.scroll { overflow-x:auto; }
table.results { border-collapse:collapse; width:100%; font-size:13.5px; }
table.results th { text-align:left; font-weight:600; color:var(--muted); font-size:12.5px;
                   border-bottom:2px solid var(--line); padding:8px 8px; white-space:nowrap; }
table.results td { padding:8px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
table.results tr:hover td { background:#f8fafc; }
table.results tr.baseline td { background:#eef3fd; }
td.verdict { white-space:nowrap; font-size:12.5px; }
a.badge.warn { background:#fef3c7; color:#92400e; text-decoration:none; margin-left:4px; }
td.verdict.up { color:#2f855a; font-weight:600; } td.verdict.down { color:#c53030; font-weight:600; }
ul.sentences { font-size:13.5px; line-height:1.6; }
ul.sentences li.better { color:#2f855a; } ul.sentences li.worse { color:#c53030; }
td.num, th.num { text-align:right !important; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.arm { font-weight:600; min-width:120px; max-width:230px; overflow-wrap:anywhere; }
td.description { color:#3e4c5b; min-width:180px; max-width:300px; }
.badge { display:inline-block; margin-left:6px; padding:1px 7px; border-radius:9px; background:var(--accent);
         color:#fff; font-size:11px; font-weight:600; vertical-align:1px; }
.pm { color:var(--muted); font-size:12px; }
.delta.up { color:var(--good); font-weight:650; }
.delta.down { color:var(--bad); font-weight:650; }
.delta.flat { color:var(--muted); }
img.figure { display:block; max-width:100%; height:auto; margin:8px 0 4px; }
table.grid { border-collapse:separate; border-spacing:10px 8px; margin-left:-10px; }
table.grid th { font-size:12px; color:var(--muted); font-weight:600; text-align:center; white-space:nowrap; }
table.grid th.class { text-align:right; color:var(--ink); font-size:13.5px; padding-right:6px; max-width:180px;
                      overflow-wrap:anywhere; white-space:normal; }
table.grid td { vertical-align:top; text-align:center; }
table.grid figure { margin:0; }
table.grid img { display:block; margin:0 auto; image-rendering:pixelated; border-radius:3px;
                 box-shadow:0 0 0 1px rgba(0,0,0,0.12); }
table.grid figcaption { font-size:11px; color:var(--muted); max-width:104px; margin:3px auto 0;
                        overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.empty { display:inline-block; width:96px; height:96px; line-height:96px; color:#b8c0ca;
         background:#f6f7f9; border-radius:3px; }
.note { color:var(--muted); font-size:13px; }
footer { color:var(--muted); font-size:12.5px; padding:4px 0 30px; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · genaug report</title>
<style>{{ css }}</style>
</head>
<body>
<header>
  <div class="wrap">
    <h1>{{ title }}</h1>
    <div class="meta">
      {% for item in meta %}<span>{{ item }}</span>{% endfor %}
    </div>
    {% if finding %}<div class="finding">{{ finding }}</div>{% endif %}
    <nav>{% for anchor, label in nav %}<a href="#{{ anchor }}">{{ label }}</a>{% endfor %}</nav>
  </div>
</header>
<main class="wrap">

{% if verdicts %}
<section id="verdicts">
  <h2>Verdicts</h2>
  <p class="lead">Each difference is paired by seed (seed <i>i</i> of every arm starts from the same weights and
  sees the real images in the same order), with a {{ verdicts.level }} Student-t interval on the per-seed
  differences. A verdict is <b>better</b> or <b>worse</b> only when the {{ 'paired t' if verdicts.test == 't' else 'exact sign-flip permutation' }}
  test's p-value, Holm-corrected over the comparisons of one view, is below {{ verdicts.alpha }}; otherwise the
  difference is <b>not resolved</b>. Views: {{ verdicts.views | join('; ') }}.</p>
  {% if verdicts.figure %}<img class="figure" src="{{ verdicts.figure }}" alt="forest plot: each arm's difference against the baseline with its interval, per compute view">{% endif %}
  {% if verdicts.sentences %}<h3>Named comparisons</h3>
  <ul class="sentences">{% for item in verdicts.sentences %}<li class="{{ item.verdict | replace(' ', '-') }}">{{ item.view }}: {{ item.text }}</li>{% endfor %}</ul>{% endif %}
  <h3>Every arm against the baseline</h3>
  <ul class="sentences">{% for item in verdicts.against %}<li class="{{ item.verdict | replace(' ', '-') }}">{{ item.view }}: {{ item.text }}</li>{% endfor %}</ul>
  {% if verdicts.noise %}<p class="note">{{ verdicts.noise }}</p>{% endif %}
  {% if verdicts.rounds or verdicts.stops %}<h3>Seeds</h3>
  <ul class="sentences">{% for line in verdicts.rounds %}<li>{{ line }}</li>{% endfor %}{% for line in verdicts.stops %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
</section>
{% endif %}

<section id="results">
  <h2>Results</h2>
  <p class="lead">Test accuracy in percent, mean ± standard deviation over {{ seed_count }} seed(s);
  Δ is the difference of the means against the baseline arm{% if verdicts %}, with its paired interval and verdict
  in each compute view (steps: optimizer steps of a run; (=): the natural runs already make the matched steps){% endif %}.</p>
  <div class="scroll">
  <table class="results">
    <thead><tr>
      <th>Arm</th><th>Description</th><th class="num">Seeds</th><th class="num">Top-1 %</th><th class="num">Δ top-1</th>
      {% if verdicts %}{% for view in verdicts.views %}{% if not loop.first %}<th class="num">Matched steps</th><th class="num">Matched top-1 %</th><th class="num">Matched Δ</th>{% endif %}<th class="num">Interval</th><th>Verdict ({{ view }})</th>{% endfor %}{% endif %}
      <th class="num">Balanced %</th><th class="num">Δ bal.</th><th class="num">Steps</th><th class="num">Images seen</th>
      <th class="num">Test SE</th><th class="num">Real / synth.</th>
      <th class="num">Gen. s</th><th class="num">Train s</th><th class="num">Images/s</th>
    </tr></thead>
    <tbody>
    {% for row in results %}
      <tr class="{{ 'baseline' if row.baseline else '' }}">
        <td class="arm"><span class="arm-name">{{ row.name }}</span>{% if row.baseline %}<span class="badge">baseline</span>{% endif %}{% if row.warnings %}<a class="badge warn" href="#warnings" title="warnings that concern this arm">⚠ {{ row.warnings }}</a>{% endif %}</td>
        <td class="description">{{ row.description }}</td>
        <td class="num">{{ row.seeds }}</td>
        <td class="num">{{ row.top1 }} <span class="pm">± {{ row.top1_std }}</span></td>
        <td class="num"><span class="delta {{ row.delta_top1.css }}">{{ row.delta_top1.text }}</span></td>
        {% if verdicts %}{% for cell in row.views %}{% if not loop.first %}<td class="num">{{ cell.steps }}{% if cell.reused %} (=){% endif %}</td>
        <td class="num">{{ cell.top1 }} <span class="pm">± {{ cell.top1_std }}</span></td>
        <td class="num"><span class="delta {{ cell.css }}">{{ cell.delta }}</span></td>{% endif %}
        <td class="num"><span class="pm">{{ cell.interval }}</span></td><td class="verdict {{ cell.css }}">{{ cell.verdict }}</td>{% endfor %}{% endif %}
        <td class="num">{{ row.balanced }} <span class="pm">± {{ row.balanced_std }}</span></td>
        <td class="num"><span class="delta {{ row.delta_balanced.css }}">{{ row.delta_balanced.text }}</span></td>
        <td class="num">{{ row.steps }}</td><td class="num">{{ row.images_seen }}</td><td class="num">{{ row.test_se }}</td>
        <td class="num">{{ row.real }} / {{ row.synthetic }}</td>
        <td class="num">{{ row.generation_seconds }}</td>
        <td class="num">{{ row.train_seconds }}</td>
        <td class="num">{{ row.images_per_second }}</td>
      </tr>
    {% endfor %}
    </tbody>
  </table>
  </div>
</section>

{% if set_metrics %}
<section id="set-metrics">
  <h2>Synthetic-set metrics</h2>
  <p class="lead">Each arm's synthetic set (what it trained on) against the real training images of its classes,
  in the image space of CLIP {{ set_metrics.clip }}: Fréchet distance (FD), precision, recall, density and
  coverage (k = {{ set_metrics.k }}), class fidelity by CLIP zero-shot and by
  {% if set_metrics.classifier %}a classifier trained on real images only ({{ set_metrics.classifier }}){% else %}no
  classifier (no finished real-only run){% endif %}, and intra-class diversity. The figure puts each arm's gain
  over the baseline beside the metrics of its set: which property of a set predicts its gain.</p>
  {% if set_metrics.figure %}<img class="figure" src="{{ set_metrics.figure }}" alt="accuracy gain against FD, coverage, fidelity and diversity per arm">{% endif %}
  <div class="scroll">
  <table class="results">
    <thead><tr>
      <th>Arm</th><th class="num">Δ top-1</th><th class="num">Synth.</th><th>Budget</th><th class="num">FD</th>
      <th class="num">Precision</th><th class="num">Recall</th><th class="num">Density</th><th class="num">Coverage</th>
      <th class="num">Fidelity CLIP</th><th class="num">Fidelity clf.</th><th class="num">Diversity</th>
    </tr></thead>
    <tbody>
    {% for row in set_metrics.rows %}
      <tr>
        <td class="arm">{{ row.name }}</td>
        <td class="num"><span class="delta {{ row.delta_top1.css }}">{{ row.delta_top1.text }}</span></td>
        <td class="num">{{ row.synthetic }}</td><td>{{ row.budget }}</td><td class="num">{{ row.fd }}</td>
        <td class="num">{{ row.precision }}</td><td class="num">{{ row.recall }}</td><td class="num">{{ row.density }}</td>
        <td class="num">{{ row.coverage }}</td><td class="num">{{ row.fidelity_clip }}</td>
        <td class="num">{{ row.fidelity_classifier }}</td><td class="num">{{ row.diversity }}</td>
      </tr>
    {% endfor %}
      <tr class="baseline"><td class="arm">real training images</td><td class="num"></td><td class="num"></td><td></td>
        <td class="num"></td><td class="num"></td><td class="num"></td><td class="num"></td><td class="num"></td>
        <td class="num">{{ set_metrics.reference.fidelity_clip }}</td><td class="num"></td>
        <td class="num">{{ set_metrics.reference.diversity }}</td></tr>
    </tbody>
  </table>
  </div>
  {% for note in set_metrics.notes %}<p class="note">{{ note }}</p>{% endfor %}
</section>
{% endif %}

{% if warnings %}
<section id="warnings">
  <h2>Warnings</h2>
  <p class="lead">What the runs found that makes their numbers less trustworthy (also in each run's <code>warnings.log</code>).</p>
  {% for group in warnings %}<h3>{{ group.title }}</h3>
  <ul class="warnings">
  {% for warning in group["items"] %}<li>{{ warning }}</li>
  {% endfor %}
  </ul>{% endfor %}
</section>
{% endif %}

{% if accuracy %}
<section id="accuracy">
  <h2>Accuracy curves</h2>
  <p class="lead">Validation top-1 per epoch: the mean over seeds, with a band from the lowest to the highest seed.</p>
  <img class="figure" src="{{ accuracy }}" alt="validation top-1 per epoch for each arm">
</section>
{% endif %}

{% if grid %}
<section id="samples">
  <h2>Samples per class</h2>
  <p class="lead">Each row follows one real image of the class through the sets made from it
  (the one used by the most of them); sets made from no real image show any image of the class.
  Enlarged with nearest-neighbour. {% if grid.shown_classes < grid.total_classes %}Showing
  {{ grid.shown_classes }} of {{ grid.total_classes }} classes.{% endif %}</p>
  {% for note in grid.notes %}<p class="note">{{ note }}</p>{% endfor %}
  <div class="scroll">
  <table class="grid">
    <thead><tr><th></th>{% for column in grid.columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>
    <tbody>
    {% for row in grid.rows %}
      <tr><th class="class" scope="row">{{ row.class_name }}</th>
      {% for cell in row.cells %}
        <td>{% if cell %}<figure><img src="{{ cell.src }}" alt="{{ cell.title }}" title="{{ cell.title }}">
          {% if cell.caption %}<figcaption title="{{ cell.caption }}">{{ cell.caption }}</figcaption>{% endif %}</figure>
        {% else %}<span class="empty">–</span>{% endif %}</td>
      {% endfor %}</tr>
    {% endfor %}
    </tbody>
  </table>
  </div>
</section>
{% endif %}

{% if schedules %}
<section id="schedules">
  <h2>Curriculum schedules</h2>
  <p class="lead">rho(t), the probability that a real sample is replaced by a synthetic one of its class at
  epoch t; dots mark the epochs trained.</p>
  <img class="figure" src="{{ schedules.figure }}" alt="rho(t) of the schedules used">
  {% for note in schedules.notes %}<p class="note">{{ note }}</p>{% endfor %}
</section>
{% endif %}

{% macro figures(id, title, lead, items) %}{% if items %}
<section id="{{ id }}">
  <h2>{{ title }}</h2>
  <p class="lead">{{ lead }}</p>
  {% for item in items %}
    <h3>{{ item.title }}</h3>
    <p class="note">{{ item.summary }}</p>
    <img class="figure" src="{{ item.figure }}" alt="{{ item.title }}">
  {% endfor %}
</section>
{% endif %}{% endmacro %}
{{ figures("sdi", "SDI feature space", "Projected real features (dots) and the features sampled from them (crosses) in the
  first two principal components of the real features, coloured by class.", feature_spaces) }}
{{ figures("filters", "Filter scores", "Every score the filters wrote, kept and dropped images stacked; the dashed line is
  the cut where one value separates them (per-class ranking cuts each class at its own place).", filters) }}

{% if cost %}
<section id="cost">
  <h2>Cost per arm</h2>
  <p class="lead">Seconds spent generating the arm's synthetic data and training it.</p>
  <img class="figure" src="{{ cost }}" alt="generation and training seconds per arm">
</section>
{% endif %}

<footer>Written by genaug {{ version }} from {{ source }}.</footer>
</main>
</body>
</html>
"""


def render_page(context: dict[str, Any], path: Path) -> Path:
    """Render the page with autoescape on and write it atomically."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html = environment.from_string(TEMPLATE).render(css=Markup(CSS), **context)
    return write_text_atomic(path, html)
