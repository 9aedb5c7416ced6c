"""RLEF rollouts: the agent's own repair episode, played by the policy being trained.

An episode is what `fixloop solve` does, with the same pieces: the environment's system
prompt and task prompt, its code extraction (`parse`), the sandbox (`execute`), its feedback
rendering and the repair prompt, up to `max_turns` attempts. Episodes of a batch move turn by
turn together: one generation batch for every episode still running (left-padded and masked),
then their programs run in parallel sandbox workers.

What GRPO gets back per episode: the prompt's token ids; the completion as the model's turns
with the feedback turns between them (the chat template's own tokens); per token the
log-probability under the sampling policy; and `env_mask`, 1 on the model's tokens and 0 on
feedback tokens, so the loss never trains the model to write the environment's text. The
reward is RLEF's: +1 when the final program passes the hidden tests (the public ones when a
task has none), -1 otherwise, minus `format_penalty` for every reply without code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent import prompts
from agent.environment import Environment, FormatProblem, Proposal
from agent.episode import score
from agent.events import Task
from agent.sandbox.result import ExecResult


@dataclass
class Rollout:
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    reward: float = 0.0
    turns: int = 0
    format_errors: int = 0
    passed_public: bool = False
    passed_hidden: bool | None = None
    rewarded_on: str = "hidden"  # or "public": the task had no hidden tests
    replies: list[str] = field(default_factory=list)  # the model's turns, decoded

    def summary(self) -> dict[str, Any]:
        """What `rollouts.jsonl` keeps of the episode (the token ids aside)."""
        return {
            "reward": self.reward,
            "turns": self.turns,
            "format_errors": self.format_errors,
            "passed_public": self.passed_public,
            "passed_hidden": self.passed_hidden,
            "rewarded_on": self.rewarded_on,
            "replies": self.replies,
        }


@dataclass
class _Episode:
    task: Task
    messages: list[dict[str, str]]
    rollout: Rollout
    best: tuple[tuple[int, int], str] | None = None  # (score, code) of the best attempt
    passed: bool = False  # an attempt passed the public tests (the episode ends there)
    done: bool = False


class EpisodePlayer:
    """Plays RLEF episodes with a transformers model and its tokenizer."""

    def __init__(
        self,
        env: Environment,
        tokenizer: Any,
        *,
        max_turns: int = 3,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_k: int = 0,
        format_penalty: float = 0.2,
        workers: int = 2,
    ) -> None:
        self.env = env
        self.tokenizer = tokenizer
        self.max_turns = max_turns
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.format_penalty = format_penalty
        self.workers = workers

    # ------------------------------------------------------------ the batch

    def play(self, model: Any, tasks: list[Task]) -> list[Rollout]:
        """One episode per task (repeat a task for a group), all played to their end."""
        episodes = [self._start(task) for task in tasks]
        for _turn in range(self.max_turns):
            running = [e for e in episodes if not e.done]
            if not running:
                break
            replies = self._generate(model, running)
            with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
                outcomes = list(pool.map(self._check, running, replies))
            for episode, (reply_ids, reply_text, eos), outcome in zip(
                running, replies, outcomes, strict=True
            ):
                self._advance(episode, reply_ids, reply_text, eos, outcome)
        for episode in episodes:
            self._reward(episode)
        return [e.rollout for e in episodes]

    def _start(self, task: Task) -> _Episode:
        messages = [
            {"role": m.role, "content": m.content}
            for m in prompts.first_messages(self.env.system_prompt, self.env.prompt(task))
        ]
        ids = self._template(messages, generation_prompt=True)
        return _Episode(task, messages, Rollout(prompt_ids=ids))

    def _template(self, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------ one turn

    def _generate(self, model: Any, running: list[_Episode]) -> list[tuple[list[int], str, bool]]:
        """The next reply of every running episode, in one batch: sequences of different
        lengths are padded on the left and masked, and each row's positions start at its first
        real token, so a padded row sees exactly what it would alone (on a CPU, one batch of
        four costs about what one sequence does; a batch per length cost a turn per episode)."""
        import torch

        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = [e.rollout.prompt_ids + e.rollout.completion_ids for e in running]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        device = next(model.parameters()).device
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                do_sample=True,
                temperature=self.temperature,
                top_k=self.top_k,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
                output_scores=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, width:]
        logps = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # [batch, steps, vocab]
        chosen = logps.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        replies: list[tuple[list[int], str, bool]] = []
        for i, episode in enumerate(running):
            ids = new[i].tolist()
            eos = tok.eos_token_id in ids
            if eos:
                ids = ids[: ids.index(tok.eos_token_id) + 1]
            text = tok.decode(ids, skip_special_tokens=True)
            episode.rollout.completion_ids += ids
            episode.rollout.logprobs += chosen[i, : len(ids)].tolist()
            episode.rollout.env_mask += [1] * len(ids)
            episode.rollout.replies.append(text)
            replies.append((ids, text, eos))
        return replies

    def _check(
        self, episode: _Episode, reply: tuple[list[int], str, bool]
    ) -> tuple[Proposal | None, ExecResult | None, str]:
        """Parse and run one reply; the feedback text the next turn would show."""
        try:
            proposal = self.env.parse(reply[1])
        except FormatProblem as problem:
            return None, None, prompts.format_error_prompt(problem.message)
        result = self.env.execute(proposal, episode.task)
        feedback = "" if result.passed else self.env.render_feedback(result, proposal)
        return proposal, result, prompts.repair_prompt(feedback, self.env.reply_instruction)

    def _advance(
        self,
        episode: _Episode,
        reply_ids: list[int],
        reply_text: str,
        eos: bool,
        outcome: tuple[Proposal | None, ExecResult | None, str],
    ) -> None:
        proposal, result, feedback = outcome
        rollout = episode.rollout
        rollout.turns += 1
        if proposal is None:
            rollout.format_errors += 1
        elif result is not None:
            candidate = (score(result), proposal.code)
            if episode.best is None or candidate[0] >= episode.best[0]:
                episode.best = candidate  # ties go to the later attempt, as in the loop
            if result.passed:
                episode.passed = episode.done = True
        if rollout.turns >= self.max_turns:
            episode.done = True
        episode.messages.append({"role": "assistant", "content": reply_text})
        if episode.done:
            return
        between = self._feedback_ids(episode.messages, feedback, eos)
        episode.messages.append({"role": "user", "content": feedback})
        rollout.completion_ids += between
        rollout.logprobs += [0.0] * len(between)
        rollout.env_mask += [0] * len(between)

    def _feedback_ids(self, messages: list[dict[str, str]], feedback: str, eos: bool) -> list[int]:
        """The chat template's tokens from the end of the model's reply to the start of its
        next one: the rest of the reply's end-of-turn, the user's feedback turn, and the
        assistant header (the part of the sequence the model did not write)."""
        tok = self.tokenizer
        closed = tok.apply_chat_template(messages, tokenize=False)
        reply = messages[-1]["content"]
        end = closed[closed.rindex(reply) + len(reply) :] if reply else ""
        if eos and tok.eos_token and end.startswith(tok.eos_token):
            end = end[len(tok.eos_token) :]  # the model already wrote the end-of-turn token
        following = tok.apply_chat_template(
            [*messages, {"role": "user", "content": feedback}],
            tokenize=False,
            add_generation_prompt=True,
        )
        return list(tok(end + following[len(closed) :], add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------ the reward

    def _reward(self, episode: _Episode) -> None:
        rollout = episode.rollout
        code = episode.best[1] if episode.best is not None else None
        rollout.passed_public = episode.passed
        passed = False
        if code is not None and episode.task.hidden_tests:
            hidden = self.env.run_hidden(code, episode.task)
            rollout.passed_hidden = bool(hidden is not None and hidden.passed)
            passed = rollout.passed_hidden
        elif code is not None:
            rollout.rewarded_on = "public"
            passed = episode.passed
        rollout.reward = (1.0 if passed else -1.0) - self.format_penalty * rollout.format_errors
