//! Interrupting a generation while its prompt is read: it stops between prefill batches,
//! keeps what it read, and the next generation of the same prompt picks up from there
//! with exactly the output of one that was never interrupted.

use std::cell::Cell;
use std::ops::ControlFlow;

use crate::common::*;
use uniskip::engine::{ContextOptions, Generation, PrefillPolicy, Request, Sampling, StopReason};
use uniskip::engine::{LlamaToken, Session, generate};
use uniskip::skip::{Depth, StrategySpec, plan};

/// Small batches, so a prompt of a few hundred tokens takes several of them.
const N_BATCH: u32 = 32;

fn options() -> ContextOptions {
    ContextOptions {
        n_batch: N_BATCH,
        ..ctx(1)
    }
}

fn run(
    session: &mut Session<'_>,
    prompt: &[Vec<LlamaToken>],
    interrupt: Option<&dyn Fn() -> bool>,
) -> Generation {
    let mask = plan(&StrategySpec::Unified, 30, Depth::Ratio(1.5), 0).unwrap();
    generate(
        session,
        &Request {
            prompts: prompt,
            max_tokens: 8,
            prefill: PrefillPolicy::Full,
            sampling: &Sampling::greedy(),
            interrupt,
            lossless: None,
        },
        &mut |_| mask.clone(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap()
}

#[test]
fn an_interrupted_prefill_stops_between_batches_and_the_next_generation_resumes_it_exactly() {
    let model = load("smollm2");
    let text = "The lighthouse keeper wrote in his log every evening. ".repeat(18);
    let prompt = vec![model.tokenize(&text, true).unwrap()];
    let n_prompt = prompt[0].len();
    assert!(
        n_prompt > 4 * N_BATCH as usize,
        "{n_prompt} tokens: too short"
    );

    // Never interrupted: the reference.
    let mut fresh = model.session(&options()).unwrap();
    let whole = run(&mut fresh, &prompt, None);
    assert_eq!(whole.prompt_tokens, n_prompt);

    // Interrupted when asked the fourth time: after three batches.
    let mut session = model.session(&options()).unwrap();
    let asked = Cell::new(0);
    let fourth = || {
        asked.set(asked.get() + 1);
        asked.get() == 4
    };
    let stopped = run(&mut session, &prompt, Some(&fourth));
    assert_eq!(stopped.stop, [StopReason::Stopped]);
    assert_eq!(stopped.generated_tokens, 0);
    assert!(stopped.texts[0].is_empty());
    assert_eq!(stopped.prompt_tokens, 3 * N_BATCH as usize);
    assert_eq!(session.tokens(0).unwrap().len(), 3 * N_BATCH as usize);

    // The same prompt again reads only the rest and generates what the reference did.
    let resumed = run(&mut session, &prompt, Some(&|| false));
    assert_eq!(resumed.prompt_tokens, n_prompt - 3 * N_BATCH as usize);
    assert_eq!(resumed.tokens, whole.tokens);
    assert_eq!(resumed.texts, whole.texts);
    assert_eq!(resumed.stop, whole.stop);
}
