#![allow(dead_code)]

use scheduler::{Policy, SchedulerConfig};
use simulator::{
    AttentionModel, AttentionShape, CostModel, CpuOverheads, KernelCost, LinearCost, OperatorInput,
    OperatorKind, OperatorTerm, PiecewiseLinear, Placement, RouterKind, SimulationConfig, Workload,
};

/// A small model whose costs are easy to compute by hand: 1 ms + 10 µs per token per stage,
/// 0.5 ms LM head, 0.2 ms per stage hop, attention on slow kernels, 0.1 ms CPU each side.
pub fn cost_model(num_stages: u32) -> CostModel {
    let linear = |base: f64, slope: f64| {
        PiecewiseLinear::new(vec![1.0, 1001.0], vec![base, base + 1000.0 * slope], slope).unwrap()
    };
    let operators = vec![
        OperatorTerm::new(
            "layers".into(),
            linear(1e-3, 1e-5),
            1.0,
            OperatorInput::Tokens,
            Placement::EveryStage,
            OperatorKind::Compute,
        )
        .unwrap(),
        OperatorTerm::new(
            "lm_head".into(),
            PiecewiseLinear::constant(5e-4).unwrap(),
            1.0,
            OperatorInput::SampledTokens,
            Placement::LastStage,
            OperatorKind::Compute,
        )
        .unwrap(),
        OperatorTerm::new(
            "send_recv".into(),
            PiecewiseLinear::constant(2e-4).unwrap(),
            1.0,
            OperatorInput::Tokens,
            Placement::BetweenStages,
            OperatorKind::Communication,
        )
        .unwrap(),
    ];
    let kernel = KernelCost {
        launch_s: 1e-5,
        per_context_flop_s: 1e-12,
        per_causal_flop_s: 1e-12,
        per_byte_s: 1e-11,
        ..KernelCost::FREE
    };
    let attention = AttentionModel::new(
        AttentionShape {
            num_q_heads: 8,
            num_kv_heads: 8,
            head_dim: 64,
            dtype_bytes: 2,
        },
        kernel,
        kernel,
        kernel,
    )
    .unwrap();
    let cpu = LinearCost::new(5e-5, 1e-6).unwrap();
    let cpu = CpuOverheads {
        schedule: cpu,
        prepare_inputs: cpu,
        sample: cpu,
        process_outputs: cpu,
    };
    CostModel::new(num_stages, 4, operators, attention, cpu, 512).unwrap()
}

pub fn scheduler_config(policy: Policy) -> SchedulerConfig {
    let chunks = policy == Policy::Sarathi;
    SchedulerConfig {
        policy,
        token_budget: if chunks { 256 } else { 2048 },
        max_num_seqs: 64,
        max_model_len: 2048,
        block_size: 16,
        num_blocks: 2048,
        ..SchedulerConfig::default()
    }
}

pub fn config(num_replicas: u32, router: RouterKind, seed: u64) -> SimulationConfig {
    SimulationConfig {
        num_replicas,
        router,
        seed,
        record_iterations: true,
        max_simulated_s: None,
        spill: None,
    }
}

/// A deterministic pseudo-random workload: Poisson-like arrivals at `rate` per second.
pub fn workload(num_requests: usize, rate: f64, seed: u64) -> Workload {
    let mut rng = simulator::SplitMix64::new(seed);
    let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut now = 0.0;
    let (mut arrivals, mut prompts, mut outputs) = (vec![], vec![], vec![]);
    for _ in 0..num_requests {
        now += -(1.0 - uniform()).ln() / rate;
        arrivals.push(now);
        prompts.push(16 + (uniform() * 700.0) as u32);
        outputs.push(1 + (uniform() * 120.0) as u32);
    }
    Workload::new(arrivals, prompts, outputs).unwrap()
}
