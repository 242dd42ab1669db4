"""The training half of ROLL: DeepSpeed trainer actors, batch building, the update phase, weight sync, checkpoints.

    group = TrainerGroup(model_path, cfg.trainer)                 # world_size Ray actors in one process group
    update = prepare(samples, cfg.algorithm, cfg.trainer, pad_id)  # micro-batches per rank, global denominators
    attach(update, group.compute_logprobs(update.plan), "old_logp")
    metrics = run_update(group, update, cfg.algorithm)            # ipa.compute_loss on every micro-batch
    group.push_weights(engines.actors, version)                    # in memory, version-tagged
"""
