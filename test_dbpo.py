"""Tests of dbpo.py: the DBPO agent's log-probabilities, PPO update, anchor, success replay, imitation,
learning-rate schedule and GAE, and a bimodal bandit it must solve keeping both modes.

    python -m pytest -q test_dbpo.py        # under a minute on 2 CPU cores
(train.py's --stage dbpo, which drives it, is tested in test_train.py.)
"""
import math

import numpy as np
import pytest
import torch

import dbp
import dbpo
import toys


# ----------------------------------------------------------------------------- agent
def _agent(seed=0, **cfg):
    """A DBPO agent around a randomly perturbed stage-1 policy (To=2, Th=6, Ta=3, Da=2)."""
    torch.manual_seed(seed)
    policy = dbp.DBPPolicy(3, 2, dbp.DBPConfig(horizon=6, n_obs_steps=2, n_action_steps=3, hidden_dim=32, n_blocks=1))
    policy.normalizer.fit(torch.rand(50, 2, 3) * 4, torch.rand(50, 6, 2) - 0.5)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return dbpo.DBPOAgent(policy, dbpo.DBPOConfig(**cfg))


def _rollout(agent, T=4, N=5):
    buffer = agent.make_buffer(T, N)
    for t in range(T):
        actions, step = agent.act(torch.rand(N, 2, 3) * 4)
        assert actions.shape == (N, 3, 2)
        done = torch.tensor([t == 1, False, t == 2, False, False])
        buffer.add(**step, reward=torch.randn(N), terminated=done, truncated=torch.zeros(N, dtype=torch.bool),
                   final_value=torch.zeros(N))
    return buffer


def test_dbpo_logprobs_recomputed_from_the_stored_z_reproduce_the_rollout():
    agent = _agent()
    b = _rollout(agent)
    c, z, na = (b[k].flatten(0, 1) for k in ("c", "z", "na"))
    logprob, entropy, value, anchor = agent.recompute(c, z, na)
    assert torch.allclose(logprob, b["logprob"].flatten(), atol=1e-6) and torch.allclose(value, b["value"].flatten(), atol=1e-6)
    other, *_ = agent.recompute(c, torch.randn_like(z), na)                 # z matters: a fresh z changes them
    assert (other - logprob).abs().max() > 0.1
    mu, std, _ = agent.distribution(c, z)                                  # sampled within mu +- 3 std
    assert ((na - mu).abs() <= 3 * std + 1e-6).all() and torch.allclose(std, torch.full_like(std, agent.cfg.std_init))


def test_dbpo_first_update_has_ratio_one_and_zero_anchor_then_moves_the_actor():
    agent = _agent(update_epochs=1, minibatch_size=20, critic_warmup_iters=0)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    buffer = _rollout(agent)
    optimizers, schedulers = dbpo.make_optimizers(agent, agent.cfg, 10)
    stats = dbpo.ppo_update(agent, buffer, torch.zeros(5), optimizers, schedulers, agent.cfg)
    assert list(stats) == list(dbpo.METRICS) and stats["charts/minibatches"] == 1
    assert stats["losses/approx_kl"] == 0 and stats["losses/clipfrac"] == 0 and stats["losses/anchor"] == 0
    assert any(not torch.equal(before[k], v) for k, v in agent.policy.state_dict().items())
    assert all(not p.requires_grad for p in agent.anchor.parameters())
    critic_only = _agent(critic_warmup_iters=1)                             # warm-up: the actor stays put
    before = {k: v.clone() for k, v in critic_only.policy.state_dict().items()}
    dbpo.ppo_update(critic_only, _rollout(critic_only), torch.zeros(5), *dbpo.make_optimizers(critic_only, critic_only.cfg, 10),
                    critic_only.cfg, critic_only=True)
    assert all(torch.equal(before[k], v) for k, v in critic_only.policy.state_dict().items())


def test_dbpo_logprob_clamps_the_average_so_one_far_dimension_keeps_its_gradient():
    agent = _agent(logprob_min=-2.0)
    std = torch.full((2, 8), 0.1)
    mu = torch.zeros(2, 8, requires_grad=True)
    na = torch.zeros(2, 8)
    na[0, 0] = 0.3                      # sample 0: one dim 3 std out (-3.1 there, below -2; the average is 0.8)
    na[1] = 0.3                         # sample 1: every dim 3 std out, the average is below -2
    logp = agent.log_prob(mu, std, na)
    logp.sum().backward()
    assert logp[0] > -2 and logp[1] == -2.0
    assert mu.grad[0, 0] != 0           # a per-dimension clamp would have zeroed it
    assert torch.all(mu.grad[1] == 0)   # a sample clamped as a whole gives no gradient


@pytest.mark.parametrize("over_chunk, scale", [(False, 6 / 3), (True, 1.0)])
def test_dbpo_anchor_holds_each_executed_dim_as_if_the_chunk_were_executed(over_chunk, scale):
    agent = _agent(anchor_over_chunk=over_chunk)                            # Th = 6, Ta = 3
    with torch.no_grad():
        agent.policy.net.out[1].bias.add_(0.1)                               # every output 0.1 off the anchor
    c, z = torch.rand(5, 6), torch.randn(5, 12)
    anchor = agent.recompute(c, z, torch.zeros(5, 6))[3]
    assert anchor.item() == pytest.approx(0.01 * scale, rel=1e-4)          # default: summed / (Ta*Da) = 0.01 * Th/Ta


def test_dbpo_deployed_action_is_the_mean_of_the_generator():
    agent = _agent()
    obs, z = torch.rand(4, 2, 3) * 4, torch.randn(4, 6, 2)
    mu, _, mu_chunk = agent.distribution(agent.condition(obs), z.reshape(4, -1))
    deployed = agent.policy.predict_action(obs, noise=z)                   # (B, Th, Da): one pass, no std
    unnormalize = agent.policy.normalizer.unnormalize_actions
    assert torch.allclose(deployed, unnormalize(mu_chunk.reshape(4, 6, 2)), atol=1e-6)
    assert torch.allclose(deployed[:, agent.policy.executed], unnormalize(mu.reshape(4, 3, 2)), atol=1e-6)


# ----------------------------------------------------------------------------- success replay and imitation
def test_success_replay_keeps_successful_episodes_per_mode_and_survives_a_checkpoint(tmp_path):
    replay = dbpo.SuccessReplay(n_envs=2, capacity=5)
    decision = lambda v: (torch.full((2, 3), v), torch.full((2, 4), v), torch.full((2, 2), v))
    for v in range(3):                                                  # env 0: 3 decisions, env 1: 3 decisions
        replay.record(*decision(float(v)))
    replay.end(0, success=True, mode=1)
    replay.end(1, success=False, mode=0)                                # a failure is dropped
    assert list(replay.modes) == [1] and replay.modes[1][0][:, 0].tolist() == [0.0, 1.0, 2.0]
    replay.record(*decision(7.0))                                       # an episode in progress crosses a save
    path = str(tmp_path / "r.pt")
    torch.save(replay.state_dict(), path)
    back = dbpo.SuccessReplay(n_envs=2, capacity=5)
    back.load_state_dict(torch.load(path, weights_only=True))
    for r in (replay, back):
        for v in (8.0, 9.0):
            r.record(*decision(v))
        r.end(1, success=True, mode=-1)
        r.end(0, success=True, mode=1)                                  # 3 more: the oldest one is dropped
        assert sorted(r.modes) == [-1, 1] and r.modes[1][2][:, 0].tolist() == [1.0, 2.0, 7.0, 8.0, 9.0]
        assert r.modes[-1][1][:, 0].tolist() == [7.0, 8.0, 9.0] and r.pending == [[], []]
    batches = back.sample(4, torch.Generator().manual_seed(0))         # k per mode, mode order
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3)] and set(batches[0][0][:, 0].tolist()) <= {7.0, 8.0, 9.0}


def test_dbpo_imitation_weighs_each_mode_alike_however_many_successes_it_has():
    agent = _agent()
    c, z = torch.rand(40, 6), torch.randn(40, 12)
    with torch.no_grad():
        mu = agent.distribution(c, z)[0]
    near, far = (c[:20], z[:20], mu[:20] + 0.01), (c[20:], z[20:], mu[20:] + 1.0)
    one = lambda x, n: tuple(t[:n] for t in x)
    assert agent.imitation([]).item() == 0.0                          # nothing succeeded yet: no term
    torch.manual_seed(1)                                                # the same fresh z in both evaluations
    both = agent.imitation([near, one(far, 2)]).item()                  # 2 successes of the far mode weigh as 20
    torch.manual_seed(1)
    each = [agent.imitation([near]).item(), agent.imitation([one(far, 2)]).item()]
    assert both == pytest.approx(sum(each) / 2, rel=1e-5)                # not (20 * near + 2 * far) / 22
    loss = agent.imitation([far])
    loss.backward()
    assert loss.item() > 0 and agent.policy.net.out[1].bias.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- schedule and GAE
@pytest.mark.filterwarnings("ignore:Detected call of")
def test_dbpo_lr_warms_up_then_follows_a_cosine_to_its_floor():
    agent = _agent(lr_warmup_iters=4, lr_floor=0.3, actor_lr=1e-4, critic_lr=1e-3, critic_warmup_iters=2)
    (actor, critic), schedulers = dbpo.make_optimizers(agent, agent.cfg, 22)   # the actor gets 20 updates
    lrs = []
    for _ in range(20):
        lrs.append((actor.param_groups[0]["lr"], critic.param_groups[0]["lr"]))
        for sched in schedulers:
            sched.step()
    a, c = np.array(lrs).T
    assert np.allclose(a[:4], 1e-4 * np.arange(1, 5) / 4)                   # warm-up: peak/4 .. peak
    assert np.all(np.diff(a[3:]) <= 0) and a[-1] > 0.3e-4 and a[-1] < 0.35e-4
    assert c[0] == 1e-3 and np.all(np.diff(c) <= 0) and c[-1] > 0.3e-3     # the critic does not warm up
    for _ in range(10):
        for sched in schedulers:
            sched.step()
    assert actor.param_groups[0]["lr"] == pytest.approx(0.3e-4) and critic.param_groups[0]["lr"] == pytest.approx(0.3e-3)


def test_gae_matches_a_plain_reference_loop_with_termination_and_truncation():
    g = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 12, 3, 0.9, 0.8
    rewards, values, final_values, last_value = (torch.randn(T, N, generator=g) for _ in range(4))
    last_value = last_value[0]
    terminated, truncated = torch.zeros(T, N, dtype=torch.bool), torch.zeros(T, N, dtype=torch.bool)
    terminated[3, 0] = terminated[7, 1] = True
    truncated[5, 0] = truncated[2, 2] = truncated[T - 1, 1] = True
    adv, ret = dbpo.gae(rewards, values, terminated, truncated, final_values, last_value, gamma, lam)
    for n in range(N):                     # reference: walk each env's episodes forward, one at a time
        t0 = 0
        for t in range(T):
            if terminated[t, n] or truncated[t, n] or t == T - 1:
                seg = range(t0, t + 1)
                tail = 0.0 if terminated[t, n] else float(final_values[t, n] if truncated[t, n] else last_value[n])
                nxt = [float(values[k + 1, n]) for k in seg[:-1]] + [tail]
                deltas = [float(rewards[k, n]) + gamma * nxt[i] - float(values[k, n]) for i, k in enumerate(seg)]
                for i, k in enumerate(seg):
                    want = sum((gamma * lam) ** j * deltas[i + j] for j in range(len(deltas) - i))
                    assert abs(float(adv[k, n]) - want) < 1e-5, (k, n)
                t0 = t + 1
    assert torch.allclose(ret, adv + values)


def test_rewards_are_scaled_by_the_std_of_the_discounted_return_carried_across_rollouts_and_checkpoints():
    agent, gamma = _agent(gamma=0.9), 0.9
    rewards = torch.tensor([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]])                     # (T, N)
    ended = torch.tensor([[False, True], [False, False], [True, False]])
    agent.observe_rewards(rewards[:2], ended[:2])                                       # two rollouts, one stream
    agent.observe_rewards(rewards[2:], ended[2:])
    returns = [1.0, -2.0, 0.5 + 0.9 * 1.0, 3.0, 2.0 + 0.9 * 1.4, 1.0 + 0.9 * 3.0]      # reset after an episode ends
    assert agent.reward_std == pytest.approx(float(np.std(returns)), rel=1e-6)
    assert agent.running_return.tolist() == pytest.approx([0.0, 3.7])                  # env 0 ended, env 1 runs on
    again = _agent(gamma=gamma)
    again.load_state_dict(agent.state_dict())                                           # a resumed run continues it
    assert again.running_return.tolist() == pytest.approx([0.0, 3.7]) and again.reward_std == agent.reward_std
    old = {k: v for k, v in agent.state_dict().items() if k not in ("return_moments", "running_return")}
    again.load_state_dict({**old, "reward_moments": torch.tensor([5.0, 0.0, 4.0], dtype=torch.float64)})
    assert again.running_return.numel() == 0 and again.reward_std == pytest.approx(1.0)  # older checkpoint: afresh


# ----------------------------------------------------------------------------- bandit
@pytest.mark.parametrize("prefer, episode, offset", [(0.1, 1, 0.0), (0.0, 8, -1.0)])
def test_dbpo_bandit_moves_both_modes_to_the_rewarded_actions(prefer, episode, offset):
    # Stage 1 learns a = +-0.8; the reward prefers +-0.6 (the positive mode by `prefer`); DBPO with
    # its defaults must move the deployed mu(o, z) there and keep both modes. The second case: episodes of 8
    # decisions that only truncate, every reward shifted by -1 (a dense reward). Scaled by the per-decision
    # reward std, its value loss was 548 and the reward reached -0.075; by the return std, 0.008 and -0.007.
    before, after, stats = toys.bimodal_bandit(iterations=80, prefer=prefer, episode=episode, offset=offset)
    assert before["reward"] < -0.15 and after["reward"] > before["reward"] + 0.1, (before, after)
    assert 0.3 < after["positive"] < 0.7, after
    assert stats["losses/value"] < 1.0, stats       # scaled returns: the critic's targets stay O(1)
    if episode > 1:
        assert after["reward"] > -0.04, after


# ----------------------------------------------------------------------------- bad input: one clear line
def _small_agent(**cfg):
    torch.manual_seed(0)
    policy = dbp.DBPPolicy(1, 1, dbp.DBPConfig(horizon=1, n_obs_steps=1, n_action_steps=1, hidden_dim=16, n_blocks=1))
    policy.normalizer.fit(torch.rand(50, 1, 1) * 2 - 1, torch.rand(50, 1, 1) * 2 - 1)
    return dbpo.DBPOAgent(policy, dbpo.DBPOConfig(**cfg))


def _decision(agent, N):
    _, step = agent.act(torch.rand(N, 1, 1))
    no = np.zeros(N, bool)
    return dict(step, reward=np.zeros(N), terminated=no, truncated=no, final_value=np.zeros(N))


BAD_DBPO_CALLS = {
    "bounds low > high": (lambda a, b: a.set_action_bounds([1.0], [-1.0]), ValueError, "low <= high"),
    "NaN bound": (lambda a, b: a.set_action_bounds([np.nan], [1.0]), ValueError, "low <= high"),
    "bounds shape": (lambda a, b: a.set_action_bounds([-1, -1], [1, 1]), ValueError, r"low must be shaped \(1,\)"),
    "rollout of one": (lambda a, b: a.make_buffer(1, 1), ValueError, "T \\* N >= 2"),
    "float T": (lambda a, b: a.make_buffer(2.0, 3), TypeError, "T must be an int"),
    "huge obs": (lambda a, b: a.act(torch.full((3, 1, 1), 1e38)), ValueError, "not finite"),
    "NaN reward": (lambda a, b: b.add(**{**_decision(a, 3), "reward": [np.nan] * 3}), ValueError, "reward contains NaN"),
    "reward shape": (lambda a, b: b.add(**{**_decision(a, 3), "reward": np.zeros(4)}), ValueError,
                     r"reward must be shaped \(3,\)"),
    "float flags": (lambda a, b: b.add(**{**_decision(a, 3), "terminated": np.zeros(3)}), ValueError,
                    "terminated must be booleans"),
    "a field missing": (lambda a, b: b.add(**{k: v for k, v in _decision(a, 3).items() if k != "final_value"}),
                        ValueError, "add\\(\\) needs exactly"),
    "a full buffer": (lambda a, b: [b.add(**_decision(a, 3)) for _ in range(3)], ValueError, "the buffer is full"),
    "update before full": (lambda a, b: dbpo.ppo_update(a, b, torch.zeros(3), *dbpo.make_optimizers(a, a.cfg, 5), a.cfg),
                           ValueError, "needs a full buffer: 0 of 2"),
    "no iterations": (lambda a, b: dbpo.make_optimizers(a, a.cfg, 0), ValueError, "n_iterations must be an int >= 1"),
    "not a policy": (lambda a, b: dbpo.DBPOAgent(a.critic), TypeError, "DBPOAgent takes a dbp.DBPPolicy"),
    "an unfit policy": (lambda a, b: dbpo.DBPOAgent(dbp.DBPPolicy(1, 1, dbp.DBPConfig(horizon=1, n_obs_steps=1,
                                                                        n_action_steps=1))),
                        ValueError, "the normalizer is not fit"),
}


@pytest.mark.parametrize("case", sorted(BAD_DBPO_CALLS))
def test_every_documented_dbpo_call_refuses_bad_data_in_one_line(case):
    call, error, match = BAD_DBPO_CALLS[case]
    agent = _small_agent()
    with pytest.raises(error, match=match) as e:
        call(agent, agent.make_buffer(2, 3))
    assert "\n" not in str(e.value)


def test_a_bad_last_value_is_refused_and_a_last_minibatch_of_one_joins_the_one_before():
    agent = _small_agent(minibatch_size=4, update_epochs=1, critic_warmup_iters=0)
    buffer = agent.make_buffer(3, 3)                            # 9 decisions: minibatches of 4 and 5, none of 1
    for _ in range(3):
        buffer.add(**{**_decision(agent, 3), "reward": np.random.rand(3)})
    optimizers, schedulers = dbpo.make_optimizers(agent, agent.cfg, 5)
    with pytest.raises(ValueError, match=r"last_value must be shaped \(3,\)"):
        dbpo.ppo_update(agent, buffer, torch.zeros(4), optimizers, schedulers, agent.cfg)
    with pytest.raises(ValueError, match="last_value contains NaN"):
        dbpo.ppo_update(agent, buffer, torch.full((3,), float("nan")), optimizers, schedulers, agent.cfg)
    stats = dbpo.ppo_update(agent, buffer, torch.zeros(3), optimizers, schedulers, agent.cfg)
    assert stats["charts/minibatches"] == 2 and all(np.isfinite(v) for v in stats.values())
    assert all(torch.isfinite(p).all() for p in agent.parameters())
    assert [len(m) for m in dbpo.minibatches(9, 4, None, "cpu")] == [4, 5]


def test_without_a_planned_length_the_lr_stays_at_its_peak_after_the_warm_up():
    agent = _small_agent(lr_warmup_iters=2, critic_warmup_iters=0)
    (actor, _), (schedule, _) = dbpo.make_optimizers(agent, agent.cfg, None)
    lrs = []
    for _ in range(6):
        lrs.append(actor.param_groups[0]["lr"])
        actor.step()
        schedule.step()
    assert lrs == pytest.approx([agent.cfg.actor_lr * f for f in (0.5, 1, 1, 1, 1, 1)])


# ----------------------------------------------------------------------------- the authors' configuration
def test_advantages_normalized_over_the_whole_rollout_or_over_each_minibatch(monkeypatch):
    sizes = []
    normalized = dbpo.normalized
    monkeypatch.setattr(dbpo, "normalized", lambda x: sizes.append(len(x)) or normalized(x))
    for adv_norm, want in (("rollout", [20]), ("minibatch", [4, 8, 8])):   # 20 decisions; minibatches of 8, 8, 4
        sizes.clear()
        agent = _agent(update_epochs=1, minibatch_size=8, critic_warmup_iters=0, adv_norm=adv_norm, target_kl=math.inf)
        stats = dbpo.ppo_update(agent, _rollout(agent), torch.zeros(5), *dbpo.make_optimizers(agent, agent.cfg, 10),
                                agent.cfg)
        assert sorted(sizes) == want and stats["charts/minibatches"] == 3, adv_norm
    x = dbpo.normalized(torch.tensor([1.0, 2.0, 6.0]))
    assert abs(x.mean()) < 1e-6 and abs(x.std() - 1) < 1e-6


def test_rollout_reward_scaling_divides_by_the_rollouts_own_reward_std():
    for scale in ("rollout", "return"):
        agent = _agent(reward_scale=scale)
        buffer = _rollout(agent)
        adv, ret = dbpo.scaled_advantages(agent, buffer, torch.zeros(5), agent.cfg)
        std = buffer["reward"].std().item() if scale == "rollout" else agent.reward_std
        want = dbpo.gae(buffer["reward"] / std, buffer["value"], buffer["terminated"], buffer["truncated"],
                        buffer["final_value"], torch.zeros(5), agent.cfg.gamma, agent.cfg.gae_lambda)
        assert torch.allclose(adv, want[0], atol=1e-5) and torch.allclose(ret, want[1], atol=1e-5), scale


def test_the_paper_preset_is_the_authors_configuration_and_flags_still_apply():
    cfg = dbpo.DBPOConfig(**dbpo.PRESETS["paper"])        # the authors' configs/finetune.yaml, where ours differ
    assert (cfg.clip_coef, cfg.actor_lr, cfg.critic_lr, cfg.std_init, cfg.std_min, cfg.std_max) == \
        (0.02, 1e-5, 1e-4, 0.03, 0.03, 0.10)
    assert (cfg.adv_norm, cfg.reward_scale, cfg.minibatch_size >= 20000, cfg.update_epochs) == ("rollout", "rollout", True, 5)
    assert (cfg.vf_coef, cfg.weight_decay, cfg.anchor_coef, cfg.anchor_over_chunk, cfg.ent_coef) == (0.25, 1e-6, 1.0, True, 0.01)
    assert (cfg.critic_warmup_iters, cfg.lr_warmup_iters, cfg.lr_floor, cfg.target_kl, cfg.max_grad_norm) == \
        (5, 10, 0.3, 0.02, 0.5)
    assert (cfg.gamma, cfg.gae_lambda, cfg.logprob_min) == (0.99, 0.95, -2.0)
    agent = _agent(**dbpo.PRESETS["paper"])
    optimizers, _ = dbpo.make_optimizers(agent, agent.cfg, 10)
    assert [o.param_groups[0]["weight_decay"] for o in optimizers] == [1e-6, 1e-6]
    with pytest.raises(dbp.ConfigError, match="adv_norm = 'episode': must be one of"):
        dbpo.DBPOConfig(adv_norm="episode")


def test_ppo_from_an_mse_regressor_starts_at_the_modes_average_and_improves_on_the_bandit():
    before, after, stats = toys.bimodal_bandit(iterations=40, objective="mse")   # measured: -0.555 -> -0.015
    assert before["reward"] < -0.45                       # the regressor averaged +-0.8: about 0, 0.6 from each target
    assert after["reward"] > before["reward"] + 0.3 and np.isfinite(stats["losses/value"])


# ----------------------------------------------------------------------------- latent steering
def test_latent_steering_samples_z_and_deploys_exactly_that_policy_in_one_pass():
    agent = _agent(steer="latent", actor_lr=1e-2)
    frozen = [p.clone() for p in agent.anchor.parameters()]
    buffer = _rollout(agent)
    c, z = buffer["c"].flatten(0, 1), buffer["z"].flatten(0, 1)
    logprob, _, _, anchor = agent.recompute(c, z, buffer["na"].flatten(0, 1))
    assert torch.allclose(logprob, buffer["logprob"].flatten(), atol=1e-6) and anchor.item() == 0.0  # the prior
    assert torch.allclose(buffer["na"].flatten(0, 1), agent.anchor(z, c)[:, agent.exec], atol=1e-6)
    optimizers, schedulers = dbpo.make_optimizers(agent, agent.cfg, 10)
    for _ in range(3):
        dbpo.ppo_update(agent, buffer, torch.zeros(5), optimizers, schedulers, agent.cfg)
    assert agent.steer_mean.weight.abs().sum() > 0 and all(torch.equal(a, b) for a, b in zip(frozen, agent.anchor.parameters()))
    obs, e = torch.rand(4, 2, 3) * 4, torch.randn(4, 6, 2)
    mean, s = agent.latent(agent.condition(obs))
    steered = agent.anchor(mean + s * e.reshape(4, -1), agent.condition(obs)).reshape(4, 6, 2)
    deployed = agent.policy.predict_action(obs, noise=e)                   # the folded input layer, one pass
    assert torch.allclose(deployed, agent.policy.normalizer.unnormalize_actions(steered), atol=1e-5)
    with pytest.raises(dbp.ConfigError, match="steer = 'noise': must be one of"):
        dbpo.DBPOConfig(steer="noise")
    with pytest.raises(dbp.ConfigError, match="imitation_coef = 1.0: must be 0 with steer 'latent'"):
        dbpo.DBPOConfig(steer="latent", imitation_coef=1.0)


def test_latent_steering_chooses_the_better_paid_mode_of_the_frozen_generator():
    # The reward pays the positive mode 0.5 more; the generator stays frozen at +-0.8, so steering z picks the
    # mode (measured: positive share 0.52 -> 0.995, reward -0.42 -> -0.17, -0.2 being the best at a = 0.8).
    cfg = dbpo.DBPOConfig(steer="latent", actor_lr=3e-3, anchor_coef=0.0)
    before, after, _ = toys.bimodal_bandit(iterations=60, prefer=0.5, cfg=cfg)
    assert before["positive"] < 0.6 and after["positive"] > 0.9, (before, after)
    assert after["reward"] > before["reward"] + 0.15 and after["reward"] < -0.15   # no action off the generator's
