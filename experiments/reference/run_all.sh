#!/usr/bin/env bash
# Recompute every R reference file in experiments/results/ and check it in numpy.
#
# Needs R with mclust, flexmix, SQUAREM and jsonlite (Debian/Ubuntu:
#   apt-get install -y r-base-core r-cran-mclust r-cran-flexmix r-cran-squarem r-cran-jsonlite)
# and a Python with numpy, scipy and scikit-learn. The test suite never calls R; it
# only reads the JSON files. Run from anywhere:
#
#   bash experiments/reference/run_all.sh                         # ~15 min on 2 cores
#   REGENERATE_INPUTS=1 bash experiments/reference/run_all.sh     # also rewrite the
#        iris/wine/digits CSVs and the k-means starts (the starts depend on the
#        scikit-learn version; the committed ones are the reference inputs)
#   PYTHON=/path/to/python bash experiments/reference/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python}"
if [[ "${REGENERATE_INPUTS:-0}" == 1 ]]; then
  "$PY" experiments/reference/export_data.py
  "$PY" experiments/reference/make_starts.py
fi
Rscript experiments/reference/mclust_me.R       # ~20 s
Rscript experiments/reference/mclust_bic.R      # ~30 s
Rscript experiments/reference/mclust_bic_more.R # ~3 s (also writes its three data CSVs)
Rscript experiments/reference/mclust_noise.R    # ~5 s
Rscript experiments/reference/squarem.R         # ~2 s
Rscript experiments/reference/flexmix_ref.R     # ~11 min
Rscript experiments/reference/flexmix_poisson_more.R  # ~10 s (also writes its three data CSVs)
"$PY" experiments/reference/check_reference.py
