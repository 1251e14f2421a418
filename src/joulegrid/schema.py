"""THE result schema of joulegrid: the only place where result columns are named.

Every measurement job writes exactly one row with these columns (success or failure alike),
so that thousands of run files from many sites concatenate without surprises. Units are in
the column names (``_s``, ``_j``, ``_w``, ``_kg``, ``_bytes``, ``_g_per_kwh``).

Bump ``SCHEMA_VERSION`` whenever a column is added, removed, renamed or changes type;
``docs/results-schema.md`` is generated from ``COLUMNS`` (``joulegrid schema --markdown``)
and a test keeps the two in sync.

This module imports pyarrow lazily so that importing it (e.g. from the grid) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .axes import CELL_AXES

SCHEMA_VERSION = 7

# Status values a run can end with.
STATUS_OK = "ok"
STATUS_FAILED = "failed"  # exception in the workload or the harness
STATUS_OOM = "oom"  # CUDA out of memory, MemoryError, or killed by the OOM killer
STATUS_NAN = "nan"  # non-finite loss / outputs
STATUS_SKIPPED = "skipped"  # not runnable here (device absent, ...); skip_reason says why
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_OOM, STATUS_NAN, STATUS_SKIPPED)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of _ARROW_TYPES
    unit: str
    group: str
    doc: str


# Arrow types by short name; resolved lazily in arrow_schema().
_TYPE_NAMES = (
    "string",
    "int64",
    "float64",
    "bool",
    "timestamp",
    "list<float64>",
    "list<reading>",
    "list<absent>",
)

_C = Column
COLUMNS: tuple[Column, ...] = (
    # ---------------------------------------------------------------- identity
    _C("schema_version", "int64", "", "identity", "Version of this schema the row was written with."),
    _C("run_id", "string", "", "identity", "Unique id of this measurement (uuid4 hex); never reused."),
    _C("cell_id", "string", "", "identity", "Grid cell: site/workload/phase/device/precision[+variant]/bs<B>/r<k>."),
    _C("site", "string", "", "identity", "Site name (key of config/sites.yaml) the run was configured for."),
    _C("workload", "string", "", "identity", "Workload name (registry key or import path)."),
    _C("phase", "string", "", "identity", "train or infer."),
    _C("device", "string", "", "identity", "Requested device: cpu or cuda."),
    _C(
        "precision",
        "string",
        "",
        "identity",
        "Numeric precision: fp64, fp32, bf16 (autocast), fp16 (autocast + GradScaler), fp16_noscaler, int8 "
        "(post-training quantization, infer).",
    ),
    _C(
        "precision_impl",
        "string",
        "",
        "identity",
        "How the precision was applied, e.g. autocast(bfloat16), autocast(float16)+GradScaler; int8: scheme, API and "
        "backend with the reason it was chosen, calibration samples, and the layers quantized (e.g. '3 conv layer(s) "
        "int8, 2 Linear layer(s) int8'), counted in the converted model.",
    ),
    _C(
        "precision_backend",
        "string",
        "",
        "identity",
        "int8: the quantization backend that ran (onednn, x86, fbgemm, qnnpack, torchao, pt2e_x86; docs/workloads.md, "
        "'Which int8?'); null for other precisions.",
    ),
    _C(
        "precision_scheme",
        "string",
        "",
        "identity",
        "int8: static (weights and activations int8, calibrated on the training split; convolutions too) or dynamic "
        "(activations quantized per batch; Linear layers only); null for other precisions.",
    ),
    _C(
        "precision_backend_pinned",
        "bool",
        "",
        "identity",
        "int8: true = the backend was pinned by precision_options.int8.backend, false = chosen by the rule from the "
        "device and CPU flags; null for other precisions.",
    ),
    _C(
        "precision_native",
        "bool",
        "",
        "identity",
        "Does the device run this precision natively? CPU: from cpu_flags (bf16: avx512_bf16/amx_bf16; fp16: "
        "avx512_fp16/amx_fp16; int8: avx512_vnni/avx_vnni/amx_int8; Arm: bf16, asimdhp, asimddp/i8mm); GPU: from "
        "gpu_compute_capability (fp16 >= 7.0, int8 >= 7.5, bf16 >= 8.0); fp32/fp64 always. False = emulated; null = "
        "unknown.",
    ),
    _C(
        "variant",
        "string",
        "",
        "identity",
        "Model variant: baseline, pruned (30 % magnitude pruning) or compiled (torch.compile, default mode).",
    ),
    _C(
        "variant_impl",
        "string",
        "",
        "identity",
        "What the variant did, e.g. global L1 unstructured pruning of 30% of Linear/Conv weights at initialisation, "
        "mask kept during training (train) / of the trained fp32 reference model (infer); torch.compile (default "
        "mode) after the precision.",
    ),
    _C("batch_size", "int64", "samples", "identity", "Batch size of the measured phase."),
    _C("repeat", "int64", "", "identity", "Repeat index k of the cell."),
    _C(
        "block",
        "int64",
        "",
        "identity",
        "Block of the run: block k = every cell's repeat k, run in a seeded random order (docs/measurement.md, "
        "'Blocked repeats'); the analysis compares two cells of one host per block.",
    ),
    _C(
        "block_position",
        "int64",
        "",
        "identity",
        "The run's PLANNED position in its block (0 = first; joulegrid.grid.block_order, from the grid snapshot); "
        "the order in which runs really started is that of window_started_at. Null where the job had no block plan "
        "(a --spec run).",
    ),
    _C("seed", "int64", "", "identity", "Random seed used for data split, init and shuffling."),
    _C("attempt", "int64", "", "identity", "Snakemake attempt number (1 = first try, >1 = retry)."),
    _C(
        "config_hash",
        "string",
        "",
        "identity",
        "sha256 (16 hex) of what determines the measurement: the workload's settings, the measure settings, the "
        "seed and the measurement version (joulegrid.spec.identity; not the site, scheduler, carbon intensity or "
        "report settings). Equal hash = same settings; it ends the run file's name, and the summary holds the "
        "current configuration's hashes only.",
    ),
    # ---------------------------------------------------------------- code versions (docs/compare.md)
    _C(
        "code_version",
        "string",
        "",
        "identity",
        "Which code version of versions: the run measured: base (A) or head (B); null outside a versions "
        "comparison. Both versions of a cell run in one job (a quadruple: the repeat index is its number).",
    ),
    _C(
        "code_commit",
        "string",
        "",
        "identity",
        "The git commit (40 hex) of that version; for a tree measured with uncommitted changes, its HEAD; null "
        "for a folder outside git.",
    ),
    _C(
        "code_dirty",
        "bool",
        "",
        "identity",
        "True when the version was a work tree with uncommitted changes, measured as it was "
        "(versions.allow_dirty); its checkout's folder name carries a hash of its files.",
    ),
    _C(
        "code_slot",
        "int64",
        "",
        "identity",
        "Position of the run in its quadruple job: 0 = the warm-up run (discarded: kept in a .warmup.parquet "
        "file beside the run file, never in the summary), 1-4 = the measured runs in ABBA (even repeat) or "
        "BAAB (odd repeat) order.",
    ),
    _C("started_at", "timestamp", "UTC", "identity", "When the job started (after imports)."),
    _C("finished_at", "timestamp", "UTC", "identity", "When the row was written."),
    _C(
        "window_started_at",
        "timestamp",
        "UTC",
        "identity",
        "When the measured window (wall_s, energy_j) started; null if the run stopped before it. The analysis "
        "integrates a site's intensity series over window_started_at .. window_finished_at (joulegrid.carbon).",
    ),
    _C("window_finished_at", "timestamp", "UTC", "identity", "When the measured window ended."),
    # ---------------------------------------------------------------- system description
    _C("hostname", "string", "", "system", "Host the job ran on."),
    _C("os", "string", "", "system", "Operating system (platform.platform())."),
    _C("cpu_model", "string", "", "system", "CPU model name from /proc/cpuinfo."),
    _C(
        "cpu_flags",
        "string",
        "",
        "system",
        "Precision-relevant CPU features present, comma-separated, of: avx2, avx512f, avx512_vnni, avx_vnni, "
        "avx512_bf16, avx512_fp16, amx_bf16, amx_int8, amx_fp16 (x86) and asimddp, i8mm, bf16, asimdhp (Arm), from "
        "/proc/cpuinfo ('' = none of them; null = not readable).",
    ),
    _C("cpu_sockets", "int64", "", "system", "CPU packages (sockets) of the host, from /proc/cpuinfo physical id."),
    _C("cpu_cores_logical", "int64", "cores", "system", "Logical CPUs of the host."),
    _C("cpu_cores_physical", "int64", "cores", "system", "Physical cores of the host."),
    _C(
        "cpu_max_mhz",
        "float64",
        "MHz",
        "system",
        "Maximum CPU frequency (psutil.cpu_freq); null where the host does not expose it (many VMs).",
    ),
    _C("cpu_affinity", "int64", "cores", "system", "CPUs the job may run on (sched_getaffinity)."),
    _C("memory_total_bytes", "int64", "bytes", "system", "Host memory."),
    _C("gpu_model", "string", "", "system", "GPU model (torch.cuda / NVML); null without GPU."),
    _C("gpu_count", "int64", "", "system", "GPUs visible to the job."),
    _C(
        "gpu_compute_capability",
        "string",
        "",
        "system",
        "CUDA compute capability of GPU 0 (torch.cuda.get_device_capability), e.g. 8.0; decides precision_native on "
        "cuda.",
    ),
    _C("gpu_memory_bytes", "int64", "bytes", "system", "Total memory of GPU 0 (torch.cuda.get_device_properties)."),
    _C("gpu_driver_version", "string", "", "system", "NVIDIA driver version (NVML)."),
    _C(
        "gpu_cuda_driver_version",
        "string",
        "",
        "system",
        "Highest CUDA version the driver supports (NVML nvmlSystemGetCudaDriverVersion), e.g. 12.8.",
    ),
    _C("cuda_version", "string", "", "system", "CUDA version torch was built with (torch.version.cuda)."),
    _C(
        "cudnn_version",
        "string",
        "",
        "system",
        "cuDNN version torch uses (torch.backends.cudnn.version()); null on CPU builds.",
    ),
    _C(
        "gpu_power_limit_w",
        "float64",
        "W",
        "system",
        "Enforced power limit of GPU 0 (NVML nvmlDeviceGetEnforcedPowerLimit).",
    ),
    _C("python_version", "string", "", "system", "Python version."),
    _C("torch_version", "string", "", "system", "torch version."),
    _C("numpy_version", "string", "", "system", "numpy version."),
    _C("codecarbon_version", "string", "", "system", "codecarbon version (if imported)."),
    _C("zeus_version", "string", "", "system", "zeus version (if imported)."),
    _C("joulegrid_version", "string", "", "system", "joulegrid package version."),
    _C("joulegrid_git_commit", "string", "", "system", "git commit of the joulegrid checkout (+dirty), if known."),
    _C("torch_num_threads", "int64", "threads", "system", "torch intra-op threads the run really used."),
    _C("torch_num_interop_threads", "int64", "threads", "system", "torch inter-op threads."),
    _C("omp_num_threads", "string", "", "system", "OMP_NUM_THREADS as seen by the job (schedulers set it)."),
    _C("mkl_num_threads", "string", "", "system", "MKL_NUM_THREADS as seen by the job."),
    # ---------------------------------------------------------------- scheduler
    _C("scheduler", "string", "", "scheduler", "local, slurm or htcondor (detected in the job)."),
    _C("job_id", "string", "", "scheduler", "Scheduler job id (Slurm job id, HTCondor cluster.proc); null locally."),
    _C("node_name", "string", "", "scheduler", "Execution node as the scheduler names it."),
    _C("partition", "string", "", "scheduler", "Slurm partition / HTCondor pool or accounting group."),
    _C("submit_time", "timestamp", "UTC", "scheduler", "When the job was submitted to the scheduler."),
    _C("job_start_time", "timestamp", "UTC", "scheduler", "When the scheduler started the job."),
    _C(
        "queue_wait_s",
        "float64",
        "s",
        "scheduler",
        "job_start_time - submit_time (Slurm: scontrol StartTime - SubmitTime, 1 s resolution; HTCondor: "
        "JobCurrentStartDate - QDate); null locally.",
    ),
    _C(
        "alloc_cpus",
        "int64",
        "cores",
        "scheduler",
        "CPUs allocated to the job (Slurm: TRES cpu; HTCondor: CpusProvisioned; locally: Snakemake threads). Without "
        "cgroups the job is not pinned to them: compare cpu_affinity.",
    ),
    _C(
        "alloc_mem_mb",
        "int64",
        "MB",
        "scheduler",
        "Memory allocated to the job (Slurm: TRES mem; HTCondor: MemoryProvisioned); null locally.",
    ),
    _C("alloc_gpus", "int64", "", "scheduler", "GPUs allocated to the job."),
    _C(
        "threads_consistent",
        "bool",
        "",
        "scheduler",
        "True when torch_num_threads, alloc_cpus and OMP/MKL_NUM_THREADS (where set) are all equal; False = the job "
        "did not use what it was allocated (timings not comparable across sites); null when unknown.",
    ),
    _C(
        "threads_mismatch",
        "string",
        "",
        "scheduler",
        "The disagreeing thread settings, e.g. 'torch_num_threads=1, alloc_cpus=2, omp_num_threads=1'; null when "
        "consistent.",
    ),
    # ---------------------------------------------------------------- workload / model
    _C("dataset", "string", "", "workload", "Dataset name and source file."),
    _C("dataset_rows", "int64", "samples", "workload", "Rows/samples of the dataset after scale-up (train + test)."),
    _C("n_train", "int64", "samples", "workload", "Training split size."),
    _C("n_test", "int64", "samples", "workload", "Test split size (inference runs over it)."),
    _C("n_features", "int64", "", "workload", "Input features per sample."),
    _C(
        "n_params",
        "int64",
        "",
        "workload",
        "Parameters of the model as stored (non-zero ones for pruned models are in n_params_nonzero).",
    ),
    _C("n_params_nonzero", "int64", "", "workload", "Non-zero parameters (differs from n_params for pruned models)."),
    _C("model_size_bytes", "int64", "bytes", "workload", "Size of the serialized state_dict as stored (torch.save)."),
    _C("compression_ratio", "float64", "", "workload", "Autoencoders: input columns / latent size."),
    _C(
        "epochs",
        "int64",
        "",
        "workload",
        "Training epochs of one training run (train: the first run of the window; fewer than configured when it "
        "reached target_quality); 0 for infer.",
    ),
    _C("n_batches", "int64", "", "workload", "Batches in the measured phase (all passes)."),
    _C("n_samples", "int64", "samples", "workload", "Samples processed in the measured phase (all passes)."),
    _C(
        "infer_passes",
        "int64",
        "",
        "workload",
        "Inference: full passes over the test split in the measured window (repeated until measure.min_window_s was "
        "reached); null for train.",
    ),
    _C(
        "train_runs",
        "int64",
        "",
        "workload",
        "Training: whole training runs in the measured window, each from the same initial weights, RNG state and "
        "data order (repeated until measure.min_window_s was reached); n_samples, n_batches and energy_j cover them "
        "all, the epoch curves and quality are the first run's; null for infer.",
    ),
    _C(
        "flops_per_sample_fwd",
        "float64",
        "FLOP",
        "workload",
        "Forward FLOPs per sample (torch FlopCounterMode, float model).",
    ),
    _C(
        "flops_per_sample_train",
        "float64",
        "FLOP",
        "workload",
        "Forward+backward FLOPs per sample (torch FlopCounterMode).",
    ),
    _C("macs_per_sample_fwd", "float64", "MAC", "workload", "Forward multiply-accumulates per sample (= FLOPs/2)."),
    # ---------------------------------------------------------------- time, throughput, memory
    _C(
        "setup_s",
        "float64",
        "s",
        "time",
        "Wall time to load data and build the model, quantization and compilation included (not measured for energy).",
    ),
    _C(
        "compile_s",
        "float64",
        "s",
        "time",
        "Wall time of torch.compile's compilations (variant compiled, int8 backend pt2e_x86): every batch shape the "
        "measured window uses, compiled during set-up, outside the window (part of setup_s); null when nothing was "
        "compiled. Depends on inductor's cache (warm on a second run).",
    ),
    _C("warmup_s", "float64", "s", "time", "Wall time of the warm-up batches (not measured for energy)."),
    _C(
        "meters_ready_s",
        "float64",
        "s",
        "time",
        "Wall time the job waited for the meters' set-up after its own set-up (codecarbon's hardware detection and "
        "zeus' import run in the background during set-up; 0 = fully hidden).",
    ),
    _C("wall_s", "float64", "s", "time", "Wall time of the measured phase (every pass / training run of the window)."),
    _C(
        "train_run_wall_s",
        "float64",
        "s",
        "time",
        "Training: wall time of one training run = wall_s / train_runs (the figure to quote for 'one training run').",
    ),
    _C("cpu_s", "float64", "s", "time", "Process CPU time (user+sys) of the measured phase."),
    _C(
        "data_s",
        "float64",
        "s",
        "time",
        "Part of wall_s spent producing batches: shuffling (randperm + gather, train), slicing, dtype conversion "
        "and copy to the device.",
    ),
    _C("eval_s", "float64", "s", "time", "Part of wall_s spent evaluating quality after each epoch (train)."),
    _C(
        "compute_s",
        "float64",
        "s",
        "time",
        "Part of wall_s spent in forward/backward/optimizer (wall_s - data_s - eval_s).",
    ),
    _C("samples_per_s", "float64", "samples/s", "time", "n_samples / wall_s."),
    _C(
        "latency_p50_s",
        "float64",
        "s",
        "time",
        "Median per-batch latency: one batch's data preparation + step (forward for infer; forward, backward, "
        "optimizer for train), device-synchronised; linear interpolation between order statistics.",
    ),
    _C("latency_p90_s", "float64", "s", "time", "90th percentile per-batch latency (as latency_p50_s)."),
    _C("latency_p99_s", "float64", "s", "time", "99th percentile per-batch latency (as latency_p50_s)."),
    _C("flops_per_s", "float64", "FLOP/s", "time", "Achieved FLOP/s = FLOPs of the phase / wall_s."),
    _C(
        "device_peak_flops",
        "float64",
        "FLOP/s",
        "time",
        "Peak dense FLOP/s of the GPU for this precision (NVIDIA datasheets, table joulegrid.flops.PEAKS); null on "
        "CPU or an unlisted GPU.",
    ),
    _C(
        "mfu",
        "float64",
        "fraction",
        "time",
        "Model FLOPs utilisation = flops_per_s / device_peak_flops (GPUs of joulegrid.flops.PEAKS only).",
    ),
    _C(
        "profile_s",
        "float64",
        "s",
        "time",
        "Wall time of the hotspot profiling passes, run after the measured window (never inside it); null if not "
        "profiled (measure.hotspots).",
    ),
    _C(
        "peak_rss_bytes",
        "int64",
        "bytes",
        "memory",
        "Peak resident set size of the job process over the whole job (VmHWM of /proc/self/status, kept across the "
        "per-window reset; not ru_maxrss, which can report the parent's peak).",
    ),
    _C(
        "peak_rss_window_bytes",
        "int64",
        "bytes",
        "memory",
        "Peak RSS during the measured window only (VmHWM reset by writing 5 to /proc/self/clear_refs just before it); "
        "null where the reset is not possible.",
    ),
    _C(
        "peak_device_mem_allocated_bytes",
        "int64",
        "bytes",
        "memory",
        "torch.cuda.max_memory_allocated during the measured window (peak stats reset before it; GPU runs).",
    ),
    _C(
        "peak_device_mem_reserved_bytes",
        "int64",
        "bytes",
        "memory",
        "torch.cuda.max_memory_reserved during the measured window (GPU runs).",
    ),
    # ---------------------------------------------------------------- energy and carbon
    _C(
        "energy_j",
        "float64",
        "J",
        "energy",
        "The JOB's energy in the measured window, gross (its share of idle power included): its share of what the node "
        "and device meters measured (energy_attribution; docs/measurement.md, 'Whose energy'), one job reading per "
        "component family (cpu, gpu, ram), each from the most trustworthy meter (measured before modelled; rapl/nvml, "
        "then zeus, codecarbon, estimate). IT energy at the meter: PUE is not included (see co2_kg).",
    ),
    _C(
        "energy_cpu_j",
        "float64",
        "J",
        "energy",
        "The job's CPU (package) part of energy_j = energy_cpu_active_j + energy_cpu_idle_j.",
    ),
    _C(
        "energy_gpu_j",
        "float64",
        "J",
        "energy",
        "GPU part of energy_j: the whole energy of the GPUs the job holds (job_gpu_uuids), no other GPU of the node "
        "(cuda cells).",
    ),
    _C(
        "energy_ram_j",
        "float64",
        "J",
        "energy",
        "The job's RAM part of energy_j: the RAPL DRAM domain split (active by CPU-time share, idle by memory share), "
        "or job_share_ram x the node's RAM model (codecarbon); never the whole host's RAM.",
    ),
    _C(
        "energy_method",
        "string",
        "",
        "energy",
        "How the node/device energy behind each part of energy_j was obtained, joined by +: rapl, nvml, zeus-rapl, "
        "zeus-nvml, codecarbon-rapl, codecarbon-nvml, codecarbon-ram-model, estimate-tdp (CPU time x W per thread), "
        "model-calibrated (this CPU model's calibration, model_calibration), ... (docs/measurement.md).",
    ),
    _C(
        "energy_attribution",
        "string",
        "",
        "energy",
        "How each part of energy_j was attributed to the job, joined by +: cpu-share (active CPU energy by the job's "
        "share of busy CPU time, idle power by its reserved CPUs), node-cpu (node not shared: all active CPU energy, "
        "idle by reserved CPUs), dram-share (active by CPU-time share, idle by memory share), mem-share (RAM model x "
        "memory share), job-gpus (the job's own GPUs).",
    ),
    _C(
        "energy_estimated",
        "bool",
        "",
        "energy",
        "True when any part of energy_j is a model estimate (no RAPL/NVML counter measured it).",
    ),
    _C(
        "energy_components",
        "string",
        "",
        "energy",
        "Components energy_j covers, e.g. cpu+ram-model or cpu+ram+gpu (dram = measured DRAM, ram-model = modelled).",
    ),
    _C(
        "energy_interval_s",
        "float64",
        "s",
        "energy",
        "Sampling (sampling meters) or polling (counter meters) interval of the largest reading in energy_j.",
    ),
    _C(
        "energy_samples",
        "int64",
        "",
        "energy",
        "Samples (or counter reads) the largest reading in energy_j took in the window.",
    ),
    _C(
        "energy_rel_err",
        "float64",
        "fraction",
        "energy",
        "Relative error of energy_j from how its meters read it: each chosen reading's meter update interval and "
        "resolution against the window (counters: one update of power at each edge, 2 u / T; NVML on A100/H100 also "
        "its partial sampling; the estimate meter: one /proc/stat tick per CPU at each edge; a constant RAM model: "
        "0), summed over the parts (docs/measurement.md, 'Sampling and low confidence'). Not a model's own error "
        "(energy_estimated, model_fit_max_rel_err).",
    ),
    _C(
        "energy_low_confidence",
        "bool",
        "",
        "energy",
        "True when energy_rel_err is above measure.energy_max_rel_err (2 %): the window is too short for its meters "
        "(raise measure.min_window_s). Independent of energy_estimated: an estimate is labelled as an estimate.",
    ),
    _C(
        "energy_low_confidence_reason",
        "string",
        "",
        "energy",
        "Why energy_low_confidence is set: the error, the bound and each reading's part (meter, update interval, "
        "window); null when it is not set.",
    ),
    _C(
        "idle_window_s",
        "float64",
        "s",
        "energy",
        "Wall time of the idle baseline measured just before the measured window (measure.idle_baseline_s); null if "
        "disabled.",
    ),
    _C(
        "idle_power_w",
        "float64",
        "W",
        "energy",
        "The job's mean power during the idle baseline (its share, attributed like energy_j, from the same meters and "
        "components); null if disabled.",
    ),
    _C(
        "energy_net_j",
        "float64",
        "J",
        "energy",
        "The job's energy net of idle: energy_j - idle_power_w * wall_s; null without idle baseline.",
    ),
    _C("mean_power_w", "float64", "W", "energy", "energy_j / wall_s."),
    _C(
        "train_run_energy_j",
        "float64",
        "J",
        "energy",
        "Training: the job's energy of one training run = energy_j / train_runs.",
    ),
    _C(
        "energy_readings",
        "list<reading>",
        "",
        "energy",
        "Every reading of every meter and window: meter, component, method, energy_j, interval_s, samples, estimated, "
        "window (idle or measured), duration_s, scope (node, device or process: as the meter measured it; job: the "
        "job's share of it), attribution (job readings: how it was split) and p0_w (model readings: the static power "
        "the model used in the window).",
    ),
    _C(
        "meters_absent",
        "list<absent>",
        "",
        "energy",
        "Meters that were asked for (or are part of auto) but could not run here, each with the reason.",
    ),
    _C(
        "meter_rel_diff",
        "float64",
        "fraction",
        "energy",
        "Largest relative difference |a-b|/max(a,b) between two meters that both MEASURED the same node/device "
        "component in the measured window (models are not compared); null if no two did.",
    ),
    _C(
        "meter_rel_diff_between",
        "string",
        "",
        "energy",
        "The component and the two meters of meter_rel_diff, e.g. 'cpu: rapl (rapl) vs codecarbon (codecarbon-rapl)'.",
    ),
    _C(
        "meters_disagree",
        "bool",
        "",
        "energy",
        "True if meter_rel_diff > 0.05: the energy figure is questionable; the report flags such runs.",
    ),
    _C(
        "co2_kg",
        "float64",
        "kg",
        "energy",
        "CO2-equivalent = energy_j/3.6e6 kWh * pue * carbon_intensity_g_per_kwh (PUE applied here, once), with the "
        "annual mean the job was given: written by the job, never recomputed. The time-resolved CO2 is co2_series_kg.",
    ),
    _C(
        "carbon_intensity_g_per_kwh",
        "float64",
        "gCO2e/kWh",
        "energy",
        "Grid carbon intensity used for co2_kg: the site's annual mean (config/sites.yaml: carbon_intensity_g_per_kwh "
        "or carbon_intensity.annual) when the job ran.",
    ),
    _C("pue", "float64", "", "energy", "Power usage effectiveness of the site used for co2_kg."),
    _C("country_iso", "string", "", "energy", "ISO 3166-1 alpha-3 country code of the site."),
    # ---------------------------------------------------------------- carbon over time (the analysis fills these)
    _C(
        "carbon_source",
        "string",
        "",
        "carbon",
        "Where the site's intensity comes from: carbon_intensity.source, else the site's source (config/sites.yaml). "
        "Filled by the analysis (joulegrid aggregate, the report) from the CURRENT sites file and its series; null in "
        "a run file.",
    ),
    _C(
        "carbon_kind",
        "string",
        "",
        "carbon",
        "average (the grid mix's emissions per kWh) or marginal (the change in emissions per kWh added): "
        "carbon_intensity.kind; null where the sites file does not say (a plain annual number). Filled by the analysis "
        "(joulegrid aggregate, the report) from the CURRENT sites file and its series; null in a run file.",
    ),
    _C(
        "carbon_basis",
        "string",
        "",
        "carbon",
        "direct (combustion at the plant) or lifecycle (plus fuel chain and construction): carbon_intensity.basis; "
        "null where not stated. Never compare CO2 of different bases. Filled by the analysis (joulegrid aggregate, the "
        "report) from the CURRENT sites file and its series; null in a run file.",
    ),
    _C(
        "carbon_resolution_s",
        "float64",
        "s",
        "carbon",
        "The series' period (its commonest step, e.g. 1800 for NESO's half-hours); null = no series, the annual mean. "
        "Filled by the analysis (joulegrid aggregate, the report) from the CURRENT sites file and its series; null in "
        "a run file.",
    ),
    _C(
        "carbon_region",
        "string",
        "",
        "carbon",
        "The series' region (carbon_intensity.region), if its file has several. Filled by the analysis (joulegrid "
        "aggregate, the report) from the CURRENT sites file and its series; null in a run file.",
    ),
    _C(
        "carbon_series",
        "string",
        "",
        "carbon",
        "The series file as the sites file names it, with the sha256 of the content used. Filled by the analysis "
        "(joulegrid aggregate, the report) from the CURRENT sites file and its series; null in a run file.",
    ),
    _C(
        "carbon_fallback",
        "string",
        "",
        "carbon",
        "Null when the series covered both the measured window and the whole job; else why the annual mean was used "
        "for which (no series for the site; the window outside the series' coverage or across a gap; no window times "
        "in the row). Filled by the analysis (joulegrid aggregate, the report) from the CURRENT sites file and its "
        "series; null in a run file.",
    ),
    _C(
        "carbon_intensity_series_g_per_kwh",
        "float64",
        "gCO2e/kWh",
        "carbon",
        "The series' time-weighted mean over the measured window (each value the mean of the period starting at its "
        "timestamp; docs/sites.md, 'Carbon intensity over time'); the annual mean where carbon_fallback says so. "
        "Filled by the analysis (joulegrid aggregate, the report) from the CURRENT sites file and its series; null in "
        "a run file.",
    ),
    _C(
        "co2_series_kg",
        "float64",
        "kg",
        "carbon",
        "Time-resolved CO2e of the measured window = energy_j/3.6e6 kWh * pue * carbon_intensity_series_g_per_kwh / "
        "1000 (energy drawn at a constant rate within the window). Filled by the analysis (joulegrid aggregate, the "
        "report) from the CURRENT sites file and its series; null in a run file.",
    ),
    _C(
        "co2_annual_kg",
        "float64",
        "kg",
        "carbon",
        "The same energy with the site's current annual mean and PUE: co2_kg as the sites file now says (comparable "
        "with other tools). Filled by the analysis (joulegrid aggregate, the report) from the CURRENT sites file and "
        "its series; null in a run file.",
    ),
    _C(
        "job_carbon_intensity_series_g_per_kwh",
        "float64",
        "gCO2e/kWh",
        "carbon",
        "The series' time-weighted mean over the whole job (process_started_at, else started_at, .. finished_at); the "
        "annual mean where carbon_fallback says so. Filled by the analysis (joulegrid aggregate, the report) from the "
        "CURRENT sites file and its series; null in a run file.",
    ),
    _C(
        "job_co2_series_kg",
        "float64",
        "kg",
        "carbon",
        "Time-resolved CO2e of the whole job = job_energy_j/3.6e6 kWh * pue * job_carbon_intensity_series_g_per_kwh / "
        "1000. Filled by the analysis (joulegrid aggregate, the report) from the CURRENT sites file and its series; "
        "null in a run file.",
    ),
    _C(
        "job_co2_annual_kg",
        "float64",
        "kg",
        "carbon",
        "job_energy_j with the site's current annual mean and PUE. Filled by the analysis (joulegrid aggregate, the "
        "report) from the CURRENT sites file and its series; null in a run file.",
    ),
    # ---------------------------------------------------------------- attribution: whose energy (measured window)
    _C(
        "energy_cpu_active_j",
        "float64",
        "J",
        "attribution",
        "The job's ACTIVE CPU energy: job_share_cpu x the node's CPU energy above idle power (p0_cpu_w x wall); "
        "neighbour-invariant.",
    ),
    _C(
        "energy_cpu_idle_j",
        "float64",
        "J",
        "attribution",
        "The job's share of the node's CPU idle power: job_cpus / node_cpus x min(node CPU energy, p0_cpu_w x wall).",
    ),
    _C(
        "node_energy_j",
        "float64",
        "J",
        "attribution",
        "The node's energy in the measured window, from the same meters and components as energy_j (CPU packages, DRAM "
        "or the host's RAM model; GPU: the job's own devices). Per node: never sum it over jobs sharing a node.",
    ),
    _C(
        "node_energy_cpu_j",
        "float64",
        "J",
        "attribution",
        "CPU part of node_energy_j (all packages, or the estimate meter's node model).",
    ),
    _C(
        "node_energy_gpu_j",
        "float64",
        "J",
        "attribution",
        "GPU part of node_energy_j: the job's own devices (equal to energy_gpu_j).",
    ),
    _C(
        "node_energy_ram_j",
        "float64",
        "J",
        "attribution",
        "RAM part of node_energy_j (DRAM domain, or codecarbon's model of the host's RAM).",
    ),
    _C(
        "node_other_active_j",
        "float64",
        "J",
        "attribution",
        "Active energy of the node's other activity (neighbour jobs, system) in the measured window. energy_j + "
        "node_other_active_j + node_unreserved_idle_j = node_energy_j.",
    ),
    _C(
        "node_unreserved_idle_j",
        "float64",
        "J",
        "attribution",
        "Idle energy of what the job did not reserve (other CPUs, other memory) in the measured window.",
    ),
    _C(
        "job_share_cpu",
        "float64",
        "fraction",
        "attribution",
        "s = job_cpu_s / max(node_busy_cpu_s, job_cpu_s): the job's share of the node's busy CPU time (its share of "
        "active CPU and DRAM energy; 1 is used where the node is not shared).",
    ),
    _C(
        "neighbour_cpu_fraction",
        "float64",
        "fraction",
        "attribution",
        "(node_busy_cpu_s - job_cpu_s) / node_busy_cpu_s: other processes' share of the node's busy CPU time "
        "(neighbour jobs, system daemons).",
    ),
    _C(
        "node_shared",
        "bool",
        "",
        "attribution",
        "True when other processes used at least measure.node_shared_above (5 %) of the node's CPU capacity in the "
        "measured window; False = the job had the node: all active CPU energy is its own.",
    ),
    _C(
        "job_share_ram",
        "float64",
        "fraction",
        "attribution",
        "job_mem_bytes / node_mem_bytes: the job's share of the node's RAM (idle) power.",
    ),
    _C(
        "job_cpu_s",
        "float64",
        "s",
        "attribution",
        "J: CPU time of the job in the measured window: its scheduler cgroup, else its whole process tree (children "
        "included; job_cpu_source).",
    ),
    _C(
        "job_cpu_source",
        "string",
        "",
        "attribution",
        "Where job_cpu_s was read: cgroup-v2, cgroup-v1 (a Slurm job_<id> or HTCondor slot cgroup) or process-tree.",
    ),
    _C(
        "usage_window_s",
        "float64",
        "s",
        "attribution",
        "dt: how long the usage window lasted (the node's and the job's CPU times read at its edges); the meters' "
        "windows nest around it, a few calls longer. The split's static part is P0 x dt.",
    ),
    _C(
        "node_cpu_s",
        "float64",
        "s",
        "attribution",
        "T: CPU time of all the node's logical CPUs in the measured window (/proc/stat; steal included, guest not "
        "added twice).",
    ),
    _C(
        "node_busy_cpu_s",
        "float64",
        "s",
        "attribution",
        "B: busy CPU time of the node in the measured window (user + nice + system + irq + softirq; steal and "
        "iowait are not busy).",
    ),
    _C(
        "node_steal_cpu_s",
        "float64",
        "s",
        "attribution",
        "CPU time stolen by the hypervisor in the measured window (VMs).",
    ),
    _C("node_cpus", "int64", "cores", "attribution", "N: logical CPUs of the node (/proc/stat)."),
    _C(
        "job_cpus",
        "float64",
        "cores",
        "attribution",
        "A: CPUs reserved for the job on this node (Slurm SLURM_CPUS_ON_NODE, HTCondor's provisioned/requested "
        "CPUs, else the CPUs it may run on).",
    ),
    _C("job_cpus_source", "string", "", "attribution", "Where job_cpus came from: slurm, htcondor or affinity."),
    _C(
        "job_mem_bytes",
        "int64",
        "bytes",
        "attribution",
        "M: the job's memory, time-averaged over the measured window: its reservation (Slurm, HTCondor), else its "
        "cgroup's memory, else its process tree's PSS (RSS where PSS is unreadable).",
    ),
    _C(
        "job_mem_source",
        "string",
        "",
        "attribution",
        "Where job_mem_bytes came from: slurm-reservation, htcondor-reservation, cgroup, pss or rss.",
    ),
    _C("node_mem_bytes", "int64", "bytes", "attribution", "MemTotal of the node (/proc/meminfo)."),
    _C(
        "job_gpu_uuids",
        "string",
        "",
        "attribution",
        "UUIDs of the GPUs the job holds (resolved from the scheduler's device ids or CUDA_VISIBLE_DEVICES), "
        "comma-separated.",
    ),
    _C(
        "p0_cpu_w",
        "float64",
        "W",
        "attribution",
        "Idle (static) power of the node's CPU used to split energy_cpu_j (busy-ratio: the window's effective value).",
    ),
    _C(
        "p0_cpu_source",
        "string",
        "",
        "attribution",
        "Where p0_cpu_w came from: site (config/sites.yaml node_power, measured on an idle node), calibration (this "
        "CPU model's calibration in the hardware table: joulegrid calibrate), fit (over this job's intervals), "
        "busy-ratio (Kepler's E x (1 - B/T); not neighbour-invariant) or model (the estimate meter's TDP model: 10 "
        "% of N x W per thread).",
    ),
    _C(
        "p0_ram_w",
        "float64",
        "W",
        "attribution",
        "Idle power of the node's RAM used to split energy_ram_j (the RAM model: its whole power).",
    ),
    _C(
        "p0_ram_source",
        "string",
        "",
        "attribution",
        "Where p0_ram_w came from: site, calibration, fit, busy-ratio or model.",
    ),
    _C(
        "p0_fit_k_w_per_cpu",
        "float64",
        "W",
        "attribution",
        "Slope of the idle-power fit (W per busy logical CPU); null unless p0_cpu_source is fit.",
    ),
    _C(
        "threads_per_core",
        "int64",
        "",
        "attribution",
        "Hardware threads per core (2 = SMT): two busy sibling threads share one core's power.",
    ),
    # ---------------------------------------------------------------- the CPU power model
    # (docs/measurement.md, "Calibrating a CPU model")
    _C(
        "model_method",
        "string",
        "",
        "model",
        "The CPU power model the estimate meter used on this host: model-calibrated (this CPU model's calibration, "
        "model_calibration) or estimate-tdp (W per thread); null without the estimate meter. Where nothing measured "
        "the CPU it is energy_method's CPU part; on a counter host it is the prediction below.",
    ),
    _C(
        "model_calibration",
        "string",
        "",
        "model",
        "The calibration of this host's CPU model that was used (its CPU model string, calibration host and date, and "
        "how it was scaled to this host's sockets or memory); null if the hardware table has none (or a site "
        "node_power entry naming this CPU model took precedence).",
    ),
    _C(
        "model_fit_rmse_w",
        "float64",
        "W",
        "model",
        "The calibration's held-out error: RMSE of its ladder steps' power (package + DRAM), each predicted by a "
        "fit without that step.",
    ),
    _C(
        "model_fit_max_rel_err",
        "float64",
        "fraction",
        "model",
        "The calibration's largest held-out relative error of a ladder step's power (package + DRAM): what the model "
        "got wrong on a load it was not fitted on.",
    ),
    _C(
        "model_components",
        "string",
        "",
        "model",
        "Counter hosts: the components the model's prediction and the counters both cover: cpu (package) or cpu+dram.",
    ),
    _C(
        "model_node_energy_j",
        "float64",
        "J",
        "model",
        "Counter hosts: the model's prediction of the node's energy in the measured window for model_components; "
        "compare with the counters' node_energy_cpu_j (+ node_energy_ram_j for cpu+dram). Null where the model is "
        "the figure itself.",
    ),
    _C(
        "model_energy_j",
        "float64",
        "J",
        "model",
        "Counter hosts: the job's share of model_node_energy_j, split like energy_j.",
    ),
    _C(
        "model_rel_err",
        "float64",
        "fraction",
        "model",
        "Counter hosts: model_node_energy_j / the counters' node energy of the same components - 1 (signed): the "
        "model's measured error on this host and workload, which the report shows per host.",
    ),
    # ---------------------------------------------------------------- the whole job
    _C(
        "process_started_at", "timestamp", "UTC", "job", "When the job's process (the interpreter of run-cell) started."
    ),
    _C(
        "job_wall_s",
        "float64",
        "s",
        "job",
        "Wall time of the whole job: interpreter start, imports, data, model, warm-up, measured phase, up to the "
        "row, less job_excluded_s.",
    ),
    _C(
        "job_excluded_s",
        "float64",
        "s",
        "job",
        "joulegrid's own measurement extras left out of job_wall_s and job_energy_j: the idle baseline and the "
        "hotspot profiling passes.",
    ),
    _C(
        "job_untracked_s",
        "float64",
        "s",
        "job",
        "Part of job_wall_s before the meters started (interpreter start and imports up to the runner): its energy "
        "is extrapolated.",
    ),
    _C(
        "job_energy_j",
        "float64",
        "J",
        "job",
        "The job's energy over job_wall_s (same families and attribution as energy_j): tracked by continuous meters "
        "where they exist, the rest extrapolated (job_energy_extrapolated_j).",
    ),
    _C(
        "job_energy_extrapolated_j",
        "float64",
        "J",
        "job",
        "Part of job_energy_j not metered but extrapolated at the job's measured rates (idle share per second, active "
        "energy per CPU-second): the start-up before the meters, and families without a continuous meter.",
    ),
    _C(
        "job_time_outside_phase_fraction",
        "float64",
        "fraction",
        "job",
        "1 - wall_s / job_wall_s: the share of the job's time outside the measured phase.",
    ),
    _C(
        "job_energy_outside_phase_fraction",
        "float64",
        "fraction",
        "job",
        "1 - energy_j / job_energy_j: the share of the job's energy outside the measured phase.",
    ),
    # ---------------------------------------------------------------- outliers (joulegrid.diagnostics)
    _C(
        "cpu_freq_start_mhz",
        "float64",
        "MHz",
        "outliers",
        "Mean current frequency of the job's CPUs at the measured window's start (cpufreq scaling_cur_freq, else "
        "/proc/cpuinfo cpu MHz); null where neither is readable.",
    ),
    _C(
        "cpu_freq_end_mhz",
        "float64",
        "MHz",
        "outliers",
        "The same at the window's end (the CPUs still at the loop's clock): what the outlier rule compares with "
        "cpu_base_freq_mhz.",
    ),
    _C("cpu_freq_source", "string", "", "outliers", "cpufreq or cpuinfo: where the frequencies were read."),
    _C(
        "cpu_base_freq_mhz",
        "float64",
        "MHz",
        "outliers",
        "Mean base frequency of the job's CPUs (cpufreq base_frequency, intel_pstate); null where not exposed.",
    ),
    _C(
        "neighbour_contention",
        "float64",
        "fraction",
        "outliers",
        "Share of the CPUs the job needs that other processes ran on, on average over the measured window: "
        "max(0, (node_busy_cpu_s - job_cpu_s) - (node_cpus - A) x wall) / (A x wall), A = its threads, at most "
        "job_cpus. Steal time is node_steal_cpu_s / node_cpu_s.",
    ),
    _C(
        "gpu_throttle_reasons",
        "string",
        "",
        "outliers",
        "NVML clock-event (throttle) reasons of the job's GPUs at the window's edges, comma-separated (e.g. "
        "sw_power_cap, hw_slowdown, hw_thermal_slowdown); '' = none; null without GPU or NVML.",
    ),
    _C(
        "excluded",
        "bool",
        "",
        "outliers",
        "True when the outlier rule (docs/measurement.md, 'Outliers by rule') excluded this run: steal, neighbour "
        "contention, CPU frequency below base, GPU slowdown above measure.outlier_*. Excluded runs enter no mean, "
        "interval or verdict; the report counts them. Null where no rule ran (train_reference, older rows).",
    ),
    _C("exclusion_reason", "string", "", "outliers", "Why the rule excluded the run; null when it kept it."),
    _C(
        "window_attempt",
        "int64",
        "",
        "outliers",
        "Which measured window of its job the row is: 1 = the first; k > 1 after the rule excluded the k - 1 before "
        "it, which are rows of the same run file (measure.outlier_retries).",
    ),
    # ---------------------------------------------------------------- quality
    _C(
        "quality_metric",
        "string",
        "",
        "quality",
        "Name of the headline quality metric (e.g. recon_mse, roc_auc, accuracy).",
    ),
    _C(
        "quality",
        "float64",
        "",
        "quality",
        "Value of the headline quality metric on the test split (train: after the first training run of the window).",
    ),
    _C("quality_higher_is_better", "bool", "", "quality", "Direction of the quality metric."),
    _C("loss", "float64", "", "quality", "Final training loss (train) or test loss (infer)."),
    _C(
        "recon_mse",
        "float64",
        "",
        "quality",
        "Autoencoders: mean squared reconstruction error on the test split (standardised units).",
    ),
    _C("accuracy", "float64", "fraction", "quality", "Classifiers: accuracy on the test split."),
    _C("roc_auc", "float64", "", "quality", "Binary classifiers: ROC AUC on the test split."),
    _C("bkg_rejection_at_50", "float64", "", "quality", "Binary classifiers: 1/FPR at 50 % signal efficiency."),
    _C(
        "target_quality",
        "float64",
        "",
        "quality",
        "Target quality for time-to-target (null if training by epochs only).",
    ),
    _C(
        "time_to_target_s",
        "float64",
        "s",
        "quality",
        "Training wall time until target_quality was reached (the first training run of the window); null if never.",
    ),
    _C(
        "energy_to_target_j",
        "float64",
        "J",
        "quality",
        "Training energy until target_quality was reached (the first training run of the window); null if never.",
    ),
    _C(
        "epoch_wall_s",
        "list<float64>",
        "s",
        "quality",
        "Cumulative wall time at the end of each epoch (train; the first training run of the window).",
    ),
    _C(
        "epoch_energy_j",
        "list<float64>",
        "J",
        "quality",
        "Cumulative energy at the end of each epoch (train; the first training run of the window), primary method.",
    ),
    _C(
        "epoch_quality",
        "list<float64>",
        "",
        "quality",
        "Headline quality after each epoch (train; the first training run).",
    ),
    _C(
        "epoch_loss",
        "list<float64>",
        "",
        "quality",
        "Mean training loss of each epoch (train; the first training run).",
    ),
    # ---------------------------------------------------------------- status
    _C("status", "string", "", "status", "ok, failed, oom, nan or skipped."),
    _C("error_type", "string", "", "status", "Exception class (or signal) of a failed run."),
    _C("error_message", "string", "", "status", "Error message (truncated to 2,000 characters)."),
    _C("skip_reason", "string", "", "status", "Why a skipped cell did not run (e.g. no CUDA device on this host)."),
)

# ---------------------------------------------------------------- hotspots: the second table
# One row per profiled function, group, step, module, operator or kernel of one run (``kind``), keyed by
# run_id; written by joulegrid.hotspots as <results>/hotspots/<cell id>-<config hash>.parquet (a side file of
# the run, not a Snakemake output) and read back with joulegrid.hotspots.collect(results_dir). Versioned on
# its own: v2 (issue 25) added kind and the columns after it; v1 files are read (joulegrid.hotspots.collect).
HOTSPOT_SCHEMA_VERSION = 2
# The run a profile belongs to: its ids and its cell's axes (joulegrid.axes), typed as in the result table.
HOTSPOT_IDENTITY: tuple[str, ...] = ("run_id", "cell_id", *CELL_AXES)
_BY_NAME = {c.name: c for c in COLUMNS}
HOTSPOT_COLUMNS: tuple[Column, ...] = (
    _C("run_id", "string", "", "hotspots", "run_id of the run (row of the result table) this profile belongs to."),
    *(
        _C(n, _BY_NAME[n].type, _BY_NAME[n].unit, "hotspots", f"The run's {n} (the result table's column).")
        for n in HOTSPOT_IDENTITY[1:]
    ),
    _C(
        "profiler",
        "string",
        "",
        "hotspots",
        "cprofile (Python functions, in the cProfile pass) or torch (torch.profiler, in its own pass).",
    ),
    _C(
        "kind",
        "string",
        "",
        "hotspots",
        "What the row is. cprofile: function (a Python function, ranked by self time; joulegrid's own frames are "
        "left out) or group (the self time of a group of modules: workload, torch, numpy, data loading, python, "
        "other libraries). torch: step (data, forward, backward, optimizer, other: they add up to the pass), "
        "module (an nn.Module of the model by name), operator (ranked by self time; on CUDA by the device time of "
        "its kernels) or kernel (CUDA only, by device time).",
    ),
    _C("rank", "int64", "", "hotspots", "1 = the top row of its profiler and kind (groups and steps: their order)."),
    _C(
        "function",
        "string",
        "",
        "hotspots",
        "The name: function: file:line(function), the file relative to its package (a built-in workload's "
        "relative to joulegrid); group or step: its name; module: the module's name in the model (decoder.2; "
        "(model) for the model itself); operator: e.g. aten::addmm; kernel: the CUDA kernel's name.",
    ),
    _C("group", "string", "", "hotspots", "function: the group of its module (see kind)."),
    _C("file", "string", "", "hotspots", "function: its source file (null for C functions)."),
    _C(
        "call_path",
        "string",
        "",
        "hotspots",
        "function: the path into it from the profiled loop ((loop): joulegrid's frames, not shown), through the "
        "heaviest caller at each level, torch's module-call wrappers left out.",
    ),
    _C("module_type", "string", "", "hotspots", "module: its class (e.g. Linear; quantized Linear)."),
    _C("depth", "int64", "", "hotspots", "module: its depth in the model ((model) = 0, decoder = 1, decoder.2 = 2)."),
    _C("calls", "int64", "", "hotspots", "Number of calls in the profiled pass (module: forward calls)."),
    _C(
        "self_s",
        "float64",
        "s",
        "hotspots",
        "Time in the row itself: function: without its callees (cProfile tottime); group: its functions' sum; "
        "operator: its self CPU time; step: its time; module: forward and backward without its submodules'.",
    ),
    _C(
        "cumulative_s",
        "float64",
        "s",
        "hotspots",
        "Time including callees (function: cProfile cumtime; operator: CPU total; module: forward and backward, "
        "submodules included).",
    ),
    _C(
        "device_self_s",
        "float64",
        "s",
        "hotspots",
        "CUDA cells: the GPU time of the row's kernels (operator: its own; step and module: the kernels launched "
        "inside it; kernel: its time); null on CPU.",
    ),
    _C("forward_s", "float64", "s", "hotspots", "module: its forward calls' time, submodules included."),
    _C(
        "backward_s",
        "float64",
        "s",
        "hotspots",
        "module: the time of the autograd functions of the operators its forward ran (matched by sequence number), "
        "submodules included; null in inference.",
    ),
    _C(
        "fraction",
        "float64",
        "fraction",
        "hotspots",
        "Share of the profiled pass: function and group: self_s / profiled_wall_s of the cProfile pass; step and "
        "module: cumulative_s (module) or self_s (step) / the torch pass; operator: self_s (CUDA: device_self_s) / "
        "the torch pass; kernel: device_self_s / the torch pass.",
    ),
    _C(
        "profiled_wall_s",
        "float64",
        "s",
        "hotspots",
        "Wall time of the profiled pass (cprofile: around it; torch: its range in the profiler's timeline). "
        "Profilers inflate it: compare fractions, not absolute times, with the measured run.",
    ),
    _C("profiled_batches", "int64", "", "hotspots", "Batches in the profiled pass."),
    _C("profiled_samples", "int64", "", "hotspots", "Samples in the profiled pass."),
    _C(
        "profiled_pass",
        "string",
        "",
        "hotspots",
        "The profiled pass in words (not the measured one: a separate pass after the measured window).",
    ),
    _C(
        "trace_file",
        "string",
        "",
        "hotspots",
        "torch rows: the Chrome/Perfetto trace of the pass's first batches, beside the hotspots file (collect: "
        "relative to the results folder).",
    ),
)
HOTSPOT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in HOTSPOT_COLUMNS)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}

# Fields of one energy reading (element of the energy_readings list).
READING_FIELDS = (
    ("meter", "string"),  # codecarbon, zeus, rapl, nvml, estimate
    ("component", "string"),  # cpu, dram, gpu, ram-model, total
    ("method", "string"),  # e.g. rapl, nvml, codecarbon-tdp, estimate-tdp, model-calibrated
    ("energy_j", "float64"),
    ("interval_s", "float64"),
    ("samples", "int64"),
    ("estimated", "bool"),
    ("window", "string"),  # measured, idle
    ("duration_s", "float64"),  # window length as the meter saw it
    ("scope", "string"),  # node, device, process (as measured) or job (attributed)
    ("attribution", "string"),  # job readings: how the node/device reading was split
    ("p0_w", "float64"),  # model readings: the static power the model used in the window
)
ABSENT_FIELDS = (("meter", "string"), ("reason", "string"))

_schema_cache: Any = None


def _arrow_type(name: str):
    import pyarrow as pa

    scalar = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    if name in scalar:
        return scalar[name]
    if name == "list<float64>":
        return pa.list_(pa.float64())
    if name == "list<reading>":
        return pa.list_(pa.struct([(n, scalar[t]) for n, t in READING_FIELDS]))
    if name == "list<absent>":
        return pa.list_(pa.struct([(n, scalar[t]) for n, t in ABSENT_FIELDS]))
    raise KeyError(name)


def arrow_schema():
    """The pyarrow schema of a run file (all columns nullable), with the version in metadata."""
    global _schema_cache
    if _schema_cache is None:
        import pyarrow as pa

        _schema_cache = pa.schema(
            [pa.field(c.name, _arrow_type(c.type), nullable=True) for c in COLUMNS],
            metadata={b"joulegrid.schema_version": str(SCHEMA_VERSION).encode()},
        )
    return _schema_cache


def hotspot_arrow_schema():
    """The pyarrow schema of a hotspots file (all columns nullable), with its version in metadata."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(c.name, _arrow_type(c.type), nullable=True) for c in HOTSPOT_COLUMNS],
        metadata={b"joulegrid.hotspot_schema_version": str(HOTSPOT_SCHEMA_VERSION).encode()},
    )


def hotspots_to_table(rows: list[dict[str, Any]]):
    """Hotspot rows (dicts) -> a pyarrow Table with exactly HOTSPOT_COLUMNS."""
    import pyarrow as pa

    for r in rows:
        unknown = set(r) - set(HOTSPOT_COLUMN_NAMES)
        if unknown:
            raise SchemaError(
                f"unknown hotspot column(s) {sorted(unknown)}: add them to HOTSPOT_COLUMNS in joulegrid/schema.py"
            )
    full = [{**{n: None for n in HOTSPOT_COLUMN_NAMES}, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=hotspot_arrow_schema())


def polars_schema():
    """The same schema as a polars Schema (for typed empty frames and casts)."""
    import polars as pl

    return pl.Schema(pl.from_arrow(arrow_schema().empty_table()).schema)


def empty_row() -> dict[str, Any]:
    return {name: None for name in COLUMN_NAMES}


class SchemaError(ValueError):
    """A row or file does not match the result schema."""


def check_row(row: dict[str, Any]) -> None:
    unknown = set(row) - set(COLUMN_NAMES)
    if unknown:
        raise SchemaError(
            f"unknown result column(s) {sorted(unknown)}: add them to joulegrid/schema.py "
            f"(COLUMNS) and bump SCHEMA_VERSION"
        )
    if row.get("status") not in STATUSES:
        raise SchemaError(f"status must be one of {STATUSES}, got {row.get('status')!r}")


def to_table(rows: list[dict[str, Any]]):
    """Rows (dicts, missing keys = null) -> a pyarrow Table with exactly the result schema."""
    import pyarrow as pa

    for r in rows:
        check_row(r)
    full = [{**empty_row(), **r} for r in rows]
    return pa.Table.from_pylist(full, schema=arrow_schema())


def markdown(columns: tuple[Column, ...] = COLUMNS) -> str:
    """docs/results-schema.md's column table, generated from COLUMNS (or HOTSPOT_COLUMNS)."""
    out = []
    group = None
    for c in columns:
        if c.group != group:
            group = c.group
            out.append(f"\n### {group}\n\n| column | type | unit | meaning |\n|---|---|---|---|")
        out.append(f"| `{c.name}` | {c.type} | {c.unit} | {c.doc} |")
    return "\n".join(out).lstrip("\n") + "\n"
