"""Every table, figure and the HTML page, from result rows only (``python -m bench.report``).

The modules are the steps of the report, in order:

* ``rows``     -- the one row loader (newest row per batch) and the setting groups;
* ``columns``  -- one definition of every column (Acc, certified, failures, PSNR / LPIPS mean ± std, ...);
* ``format``   -- the one number formatter and the markdown / CSV / LaTeX writers;
* ``tables``   -- every table (table1, tabular, cnn, dp, fedavg, depth, labels, large_batch, and a
  generic one for any other experiment);
* ``figures``  -- every figure (failure vs width, sampling, two-stage, DP / FedAvg / depth, large
  batch) and the reconstruction grids;
* ``build``    -- one experiment: its tables, figures and manifest (``results/report/<experiment>.json``);
* ``html``     -- the static page ``results/index.html``, from the manifests;
* ``__main__`` -- the one entry: ``python -m bench.report [--experiment X ...] [--profile P]``.

Reporting reads rows (and the thumbnails rows point to); it never imports an attack.
"""
