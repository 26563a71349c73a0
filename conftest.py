"""Root pytest configuration, shared by the doctests in jaxem/ and the tests in tests/."""

import os

import jax
import pytest

# Compilation is most of the suite's time on a CI runner's two cores. The tests
# compile with LLVM's optimisation of the CPU code off and with XLA:CPU's older
# loop emitters instead of its MLIR fusion emitters (which compiled a default
# fit's programs in 9.5 s against 3.6 s; two test files 155 s against 102 s):
# XLA's HLO passes (the programs' operations) are unchanged; the machine code is
# slower, which the tests' small shapes do not feel, and may round differently in
# the last bits (one test that follows R's SQUAREM to 1e-12 over 22
# extrapolations sees 1.6e-12). Each program's code is generated as one LLVM
# module rather than split for parallel code generation: the suite's processes
# already keep both cores busy, and the split costs CPU time (fits of 300 x 3,
# n_init=2, four compilations each: 13.0 -> 11.8 CPU-seconds, the same wall-clock).
# Set XLA_FLAGS to test with other flags (an empty value: XLA's defaults). Set
# here, before any computation creates JAX's CPU client, for every worker and for
# the scripts the tests run in subprocesses.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
    " --xla_cpu_parallel_codegen_split_count=1",
)
# Every program goes to the disk cache (tests/conftest.py), however short its
# compilation (JAX keeps only those over a second by default): modules clear the
# in-memory caches (below), and a program that another module, worker or
# subprocess compiled is read back.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each module.

    One pytest process compiles several hundred XLA programs; keeping them all
    alive grew the process steadily and once ended in a segfault inside XLA's
    compiler late in the run. Modules share no compiled state worth keeping.
    """
    yield
    jax.clear_caches()


# The longest test files first (longest-processing-time scheduling): pytest-xdist's
# ``--dist loadfile`` hands whole files to idle workers in collection order (with
# ``--no-loadscope-reorder``; by default it orders them by their number of tests),
# so a long file collected last ran alone at the end of the suite. Cold-cache
# compilation seconds of each file's default tests on 2 cores (2026-12-08): 83, 82,
# 63, 60, 54, 54, 36, 36, 34, 31, 25, 25, 24, 23, 23, then 22 to 20; every other
# file takes under 20 s.
_LONGEST_FIRST = (
    "tests/test_gmm_passes.py",
    "tests/test_readme.py",
    "tests/test_hmm.py",
    "tests/test_engine_contract.py",
    "tests/test_gmm_fit.py",
    "tests/test_gmm_portfolio.py",
    "tests/test_gmm_streaming.py",
    "tests/test_gmm_arranged.py",
    "tests/test_mixtures_student_t.py",
    "tests/test_mixtures_discrete.py",
    "tests/test_gmm_prior.py",
    "tests/test_sklearn_bayesian.py",
    "tests/test_mixtures_factor.py",
    "tests/test_reliability.py",
    "tests/test_experiments_demo.py",
    "tests/test_robustness_inputs.py",
    "tests/test_inference.py",
    "tests/test_gmm_init.py",
    "tests/test_gmm_select.py",
    "tests/test_robustness_degenerate.py",
    "tests/test_implicit.py",
)


# The default run keeps the cases named here of these tests (an empty tuple: none)
# and leaves the others to ``pytest -m slow``, with the tests marked slow where
# they are written. Most repeat one check over covariance types, families or data
# sets (the kept cases rotate over the covariance types, so that each type stays
# in the default run); the others check a second route to a result that a default
# test already checks, or a property another default test also checks. The suite
# must stay under 10 minutes from a cold compilation cache on CI's two cores: the
# 786 tests of 2026-12-07 took 828 s on a slow day here (CI: 951 s with the
# install), and the machine's speed varies about 1.6-fold from hour to hour
# (2026-12-08: 663 and 671 tests took 412 s and 659 s, 13.7 and 21.2 CPU-minutes).
_DEFAULT_CASES = {
    "test_chunking.py": {
        "test_chunked_densities_and_steps_equal_unchunked": ("full",),
    },
    "test_engine_contract.py": {
        "test_chunks_from_a_memmap_equal_the_in_memory_fit": ("poisson-all",),
        "test_screening_and_refinement_as_one_loop_equal_two_loops": (),
        "test_initialisation_in_parts_at_once_equals_the_one_program": (),
        "test_online_em_reaches_the_batch_optimum": ("categorical",),
        "test_sharded_over_four_devices_equals_the_in_memory_fit": ("all",),
    },
    "test_gmm_arranged.py": {
        "test_arranged_steps_equal_the_plain_steps": ("8192-full",),
        "test_arranged_float32_steps_stay_accurate_far_apart": ("8192",),
        "test_gradients_through_arranged_steps_match_finite_differences": (),
        "test_arranged_steps_with_the_whole_pass_under_vmap_over_data_sets": (),
        "test_arranged_steps_under_vmap_over_restarts": (),
        "test_arranged_m_step_with_a_prior_and_an_mclust_model": ("EEV-False",),
        "test_arranged_steps_try_the_pass_over_all_rows_first": (),
    },
    "test_gmm_fit.py": {
        "test_n_active_equals_plain_fit_from_same_start": (),
        "test_vmap_over_keys_equals_loop": (),
    },
    "test_gmm_init.py": {
        "test_init_is_jittable_and_vmappable_over_keys": ("kmeans", "hc_vvv"),
        "test_n_active_leaves_extra_components_inactive": ("k-means++", "hc"),
        "test_initial_resp_kept_on_its_rows_gives_the_statistics_of_every_row": (),
        "test_largest_keys_are_top_k_and_the_kmeans_subset_is_of_positive_weight_rows": (),
    },
    "test_gmm_missing.py": {
        "test_without_nan_equals_the_plain_path": ("diag",),
    },
    "test_gmm_passes.py": {
        "test_layout_fit_equals_direct_fit_in_float64": ("diag-features",),
        "test_passes_equal_plain_steps_chunked_or_not": ("97-full", "None-spherical"),
        "test_the_pass_over_all_chunks_at_once_equals_the_loop": ("tied",),
        "test_float32_fit_agrees_with_float64": ("offset-1e3-full", "tight-offset-1e3-diag"),
        "test_cached_features_pass_equals_moment_pass_alone_or_batched": ("97-full",),
        "test_responsibility_stats_by_moments_or_directly": ("overlap-full", "tight-tied"),
        "test_a_pass_over_a_layout_tries_the_features_of_all_rows_first": (),
        "test_linearize_of_the_feature_pass_alone_or_one_restart_at_a_time": (),
        "test_fits_with_the_whole_pass_under_vmap_over_data_sets": (),
        "test_fits_that_try_the_whole_pass_first_agree_with_float64": ("tight-far",),
        "test_float32_moments_refused_along_a_rotated_long_axis": (),
    },
    "test_gmm_portfolio.py": {
        "test_agglomerative_restarts_start_as_gmm_init_of_their_keys": (),
        "test_fit_reports_the_initializer_of_every_restart": (),
        "test_fit_of_wide_data_leaves_the_vvv_tree_out_of_its_portfolio": (),
    },
    "test_gmm_prior.py": {
        "test_prior_keeps_a_component_on_one_point_nonsingular_without_reg_covar": ("full",),
        "test_map_m_step_is_a_stationary_point_of_the_expected_log_posterior": ("tied",),
    },
    "test_gmm_steps.py": {
        "test_jitted_em_stops_where_sklearn_stops": ("tied",),
        "test_float32_inputs_give_float32_outputs": ("spherical",),
    },
    "test_gmm_streaming.py": {
        "test_fit_chunks_equals_in_memory_em": ("full",),
        "test_float64_chunks_without_x64_work_in_float32_as_in_memory_data": (),
    },
    "test_gmm_unconstrained.py": {
        "test_grad_of_loss_using_log_prob_matches_finite_differences": ("full",),
    },
    "test_gmm_weights.py": {
        "test_integer_weights_equal_repeated_rows": ("diag",),
        "test_small_weights_give_the_fit_of_unit_weights": (),
    },
    "test_gradient.py": {
        "test_vmap_over_starts_equals_loop": (),
    },
    "test_hmm.py": {
        "test_baum_welch_matches_hmmlearn": ("full", "categorical"),
        "test_pass_by_moment_features_equals_the_direct_pass": ("tied",),
        "test_forward_backward_where_a_left_right_model_must_explain_the_data_badly": (
            "float32-3.0-0.9",
        ),
        "test_forward_backward_where_the_best_state_is_unreachable": ("float32",),
    },
    "test_inference.py": {
        "test_factor_analysers_with_shared_noise_have_its_free_coordinates_only": (),
        "test_a_shared_covariance_with_as_many_coordinates_as_components_stays_free": (),
        "test_loadings_of_two_factors_are_not_identified_and_say_so": (),
    },
    "test_kmeans.py": {
        "test_n_active_seeds_are_a_prefix": (),
    },
    "test_mixtures_student_t.py": {
        "test_chunks_from_a_memmap_equal_the_in_memory_fit": ("sample_weight",),
    },
    "test_programs.py": {
        "test_a_fit_compiled_with_either_emitter_is_the_same_fit": (),
    },
    "test_robustness_degenerate.py": {
        "test_float32_offset_1e6_agrees_with_float64_from_same_start": ("spherical",),
        "test_degenerate_data_gives_finite_fits": ("full-float32", "tied-float64"),
        "test_one_sample_and_as_many_components_as_samples": ("diag",),
        "test_singular_covariances_give_finite_fits_by_either_route": (
            "float32-moments",
            "float64-direct",
        ),
    },
    "test_sklearn_bayesian.py": {
        "test_pipeline_grid_search_clone_pickle": (),
    },
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The cases that ``_DEFAULT_CASES`` leaves out are marked slow (before
    ``-m`` deselects them); then the files of ``_LONGEST_FIRST`` in its order,
    the other test files, then the doctests (many short ones, which fill the
    workers' last minutes). pyproject's ``--no-loadscope-reorder`` keeps xdist
    from reordering the files by their number of tests."""
    cases = {
        f"tests/{file}::{test}": kept
        for file, tests in _DEFAULT_CASES.items()
        for test, kept in tests.items()
    }
    seen = set()
    for item in items:
        name, _, case = item.nodeid.partition("[")
        case = case.removesuffix("]")
        if name in cases:
            seen.update({name, (name, case)})
            if case not in cases[name]:
                item.add_marker(pytest.mark.slow)
    if len(items) > 500 and not config.getoption("keyword"):  # a whole run: no stale names
        named = {(n, c) for n, kept in cases.items() for c in kept} | set(cases)
        if not named <= seen:
            raise pytest.UsageError(f"_DEFAULT_CASES names tests that do not exist: {named - seen}")
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}

    def key(item):
        path = item.nodeid.split("::")[0]
        return rank.get(path, len(rank)), path.startswith("jaxem/")

    items.sort(key=key)
