#!/usr/bin/python
# SPDX-License-Identifier: Apache-2.0
# Copyright: migrestore contributors

from __future__ import annotations

DOCUMENTATION = r"""
---
module: layout
short_description: Install a MIG layout file and restore it with migrestore
version_added: 0.1.0
description:
  - Installs the layout file of migrestore, the TOML file that C(migrestore.service) restores at
    every boot, and runs C(migrestore apply) so that
    the host's NVIDIA GPUs are partitioned as it says; or only verifies that they are.
  - A new layout is planned against the host's GPUs (C(migrestore plan --json)) before it is
    installed. A layout that does not fit them fails the task and leaves the installed file alone.
  - C(migrestore apply) runs only when the plan has steps, so a second run reports no change.
  - A MIG mode change that waits for a GPU reset or a reboot (migrestore's exit status 4, for
    example on an Ampere GPU whose reset a driver client blocks) is a change with
    RV(reboot_required=true). After the reboot C(migrestore.service) finishes the restore.
  - Exit statuses 1 (runtime failure), 2 (usage or layout error) and 3 (drift) fail the task with
    migrestore's one-line message.
  - migrestore runs on the managed node with the task's environment, so the C(MIGRESTORE_*)
    variables it reads (C(MIGRESTORE_SIMULATE), C(MIGRESTORE_STATE_DIR), C(MIGRESTORE_RUN_DIR))
    can be set with the C(environment) keyword, for example to run against migrestore's simulator.
requirements:
  - C(migrestore) on the managed node's E(PATH), run as root (C(become)).
author:
  - migrestore contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Runs C(migrestore plan --json) (or, with O(state=verified), C(migrestore verify --json))
        and touches neither the layout file nor the GPUs.
  diff_mode:
    support: full
    details:
      - Shows the old and the new layout file, then the steps C(migrestore apply) takes per GPU.
  platform:
    platforms: posix
options:
  src:
    description:
      - A layout file on the controller, installed at O(config).
      - A relative path is searched for as M(ansible.builtin.copy) searches for its source, in the
        role's C(files/) directory and then next to the playbook.
      - Mutually exclusive with O(content).
      - With neither O(src) nor O(content) the file already at O(config) is used.
    type: path
  content:
    description:
      - The text of the layout file, installed at O(config).
      - For a layout that differs between hosts, render it with
        P(ansible.builtin.template#lookup).
      - Mutually exclusive with O(src).
    type: str
  config:
    description:
      - Where the layout file is installed and read.
      - The environment variable C(MIGRESTORE_CONFIG) of the task, when set, is the default.
    type: path
    default: /etc/migrestore/migrestore.toml
  state:
    description:
      - V(applied) installs the layout if O(src) or O(content) is given, then runs
        C(migrestore apply) if the GPUs differ from it.
      - V(verified) changes nothing. It runs C(migrestore verify) against O(src) or O(content)
        (which are not installed) or else against the file at O(config), and fails on drift.
    type: str
    choices: [applied, verified]
    default: applied
  lock_wait:
    description:
      - Seconds C(migrestore apply) waits for another migrestore run (the boot unit, or one by
        hand) to finish before it fails.
    type: float
    default: 30
  backup:
    description:
      - Keep a copy of the layout file it replaces, with a timestamp in its name.
    type: bool
    default: false
notes:
  - The new layout file is installed with mode C(0644) (an existing file keeps its owner and
    mode); migrestore refuses a layout file that anyone but root may write.
  - C(migrestore apply) stops and starts again the GPU's driver clients (DCGM, nvsm, the device
    plugin) where a step needs it, and refuses to destroy instances that processes run on.
"""

EXAMPLES = r"""
- name: Install the layout from the playbook's files/ and restore it
  migrestore.mig.layout:
    src: migrestore.toml
  become: true
  register: mig

- name: Reboot where a MIG mode change waits for a reset
  ansible.builtin.reboot:
  become: true
  when: mig.reboot_required

- name: Lay out every GPU as one 7g instance, from inline TOML
  migrestore.mig.layout:
    content: |
      version = 1

      [[gpu]]
      select = "all"

        [[gpu.instance]]
        profile = "7g.80gb"
    lock_wait: 120
    backup: true
  become: true

- name: Fail if the GPUs drifted from the installed layout
  migrestore.mig.layout:
    state: verified
  become: true
"""

RETURN = r"""
config:
  description: The layout file's path.
  returned: always
  type: str
  sample: /etc/migrestore/migrestore.toml
layout_changed:
  description: Whether the layout file was replaced (in check mode, whether it would be).
  returned: when O(state=applied)
  type: bool
  sample: true
reboot_required:
  description:
    - A MIG mode change waits for a GPU reset or a reboot (migrestore's exit status 4).
    - In check mode, whether one already waits.
  returned: always
  type: bool
  sample: false
backup_file:
  description: The copy of the replaced layout file, with O(backup=true).
  returned: when the layout file was replaced and O(backup=true)
  type: str
  sample: /etc/migrestore/migrestore.toml.2423.2026-11-29@01:09:14~
plan:
  description:
    - The document of C(migrestore plan --json) before the run, for the new layout.
    - It has the shape of RV(verify).
  returned: when O(state=applied)
  type: dict
  sample: {in_sync: false, reset_pending: false, gpus: [{index: 0, steps: [enable MIG mode]}]}
apply:
  description: The document of C(migrestore apply --json), when it ran.
  returned: when C(migrestore apply) ran
  type: dict
  contains:
    in_sync:
      description: The GPUs matched the layout after the run.
      type: bool
      returned: always
    gpus:
      description: Per GPU changed, whether it succeeded and, if not, the step that failed.
      type: list
      elements: dict
      returned: always
verify:
  description: The document of C(migrestore verify --json) after the run.
  returned: always, except in check mode with O(state=applied)
  type: dict
  contains:
    simulated:
      description: migrestore ran against its simulator (C(MIGRESTORE_SIMULATE)).
      type: bool
      returned: always
    in_sync:
      description: Every GPU matches the layout.
      type: bool
      returned: always
    reset_pending:
      description: A MIG mode change waits for a GPU reset or a reboot.
      type: bool
      returned: always
    gpus:
      description: Per GPU the layout selects, its index, UUID, name and the steps still to do.
      type: list
      elements: dict
      returned: always
    missing:
      description: Selectors of the layout that match no GPU.
      type: list
      elements: str
      returned: always
  sample:
    simulated: false
    in_sync: true
    reset_pending: false
    gpus:
      - index: 0
        uuid: GPU-8772ec8a-b0b5-5044-939b-7a95dfc10426
        name: NVIDIA H100 80GB HBM3
        steps: []
        actions: []
        busy: []
    unmanaged: []
    missing: []
    mismatched: []
    unplanned: []
    unreadable: []
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule, env_fallback

# migrestore's exit statuses (README, Exit codes) that the module tells apart.
OK = 0
FAILURE = 1
PENDING = 4
ERROR_LINE = re.compile(r"^(?:<\d>)?migrestore: error: (.*)$")
GIVEN = "the given layout"


class Run:
    """One migrestore run: its exit status, its --json document, its log records and other lines."""

    def __init__(self, code, out, err):
        self.code = code
        self.document = _json_object(out)
        self.records = []
        self.lines = []
        for line in err.splitlines():
            record = _json_object(line)
            if record is not None:
                self.records.append(record)
            elif line.strip():
                self.lines.append(line.strip())

    def message(self):
        """migrestore's error line; else what the document or the error logs say failed."""
        for line in reversed(self.lines):
            match = ERROR_LINE.match(line)
            if match:
                return match.group(1)
        if self.document is not None:
            named = _failed_gpus(self.document) if self.code == FAILURE else _drift(self.document)
            if named:
                return named
        errors = [_record_text(r) for r in self.records if r.get("level") in ("error", "critical")]
        if errors:
            return errors[-1]
        return self.lines[-1] if self.lines else "no message"


class Migrestore:
    """The migrestore command on the managed node."""

    def __init__(self, module, candidate):
        self.module = module
        self.binary = module.get_bin_path("migrestore", required=True)
        self.candidate = candidate
        self.warned = set()

    def run(self, layout, verb, *flags):
        """Run a verb with --json on a layout file; pass its warnings on (once); return the Run."""
        command = [self.binary, "--config", layout, "--log-format", "json", verb, "--json", *flags]
        run = Run(*self.module.run_command(command))
        for record in run.records:
            text = self.named(_record_text(record))
            # Once the given layout is installed, the same warning names the installed file.
            seen = text.replace(self.module.params["config"], GIVEN)
            if record.get("level") == "warning" and seen not in self.warned:
                self.warned.add(seen)
                self.module.warn(f"migrestore: {text}")
        return run

    def named(self, text):
        """Text that names the private copy of the given layout as such."""
        if self.candidate == self.module.params["config"]:
            return text
        return text.replace(self.candidate, GIVEN)

    def fail(self, verb, run, note="", **result):
        """Fail the task with migrestore's one-line message (and a note on what was left)."""
        message = self.named(run.message()) + note
        self.module.fail_json(
            msg=f"migrestore {verb} exited {run.code}: {message}", rc=run.code, **result
        )


def _json_object(text):
    """The JSON object the text holds, or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _record_text(record):
    """A JSON log record as one line: the event, then its fields."""
    fields = " ".join(
        f"{key}={value}"
        for key, value in record.items()
        if key not in ("event", "level", "timestamp")
    )
    return f"{record.get('event', '')} {fields}".strip()


def _failed_gpus(document):
    """`apply --json`: each GPU that failed, at which step and why."""
    return "; ".join(
        f"{gpu['uuid']}: {gpu['failed_step'] or 'check'}: {gpu['error']}"
        for gpu in document.get("gpus", ())
        if not gpu.get("ok", True)
    )


def _drift(document):
    """`plan`/`verify --json`: each GPU's steps still to do, and what else is wrong."""
    named = [
        f"GPU {gpu['index']} ({gpu['name']}): {', '.join(gpu['steps'])}"
        for gpu in document.get("gpus", ())
        if gpu.get("steps")
    ]
    return "; ".join(named + _problems(document))


def _problems(document):
    """`plan`/`verify --json`: selectors no GPU matches, GPUs that do not fit or are not planned."""
    named = [f"no GPU matches select {selector}" for selector in document.get("missing", ())]
    named.extend(f"{gpu['uuid']}: {gpu['problem']}" for gpu in document.get("mismatched", ()))
    named.extend(f"{gpu['uuid']}: {gpu['problem']}" for gpu in document.get("unplanned", ()))
    return named


def _read(path):
    """The file's text, or None if there is none."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise OSError(f"{path}: cannot read: {exc}") from exc


def _candidate(module):
    """The layout to plan or verify: the given text in a private file, or the installed file."""
    if module.params["content"] is None:
        return module.params["config"]
    path = os.path.join(module.tmpdir, os.path.basename(module.params["config"]))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(module.params["content"])
    return path


def _plan_steps(plan):
    """The planned steps per GPU as text, for --diff."""
    lines = []
    for gpu in plan.get("gpus", ()):
        label = f"GPU {gpu['index']} ({gpu['name']}, {gpu['uuid']})"
        if not gpu["steps"]:
            lines.append(f"{label}: in layout, nothing to do")
            continue
        lines.append(f"{label}: {len(gpu['steps'])} step(s)")
        lines.extend(f"  {number}. {step}" for number, step in enumerate(gpu["steps"], 1))
    lines.extend(_problems(plan))
    return "migrestore plan:\n" + "\n".join(f"  {line}" for line in lines) + "\n"


def _diff(config, before, content, plan):
    """The layout file before and after, then the plan."""
    diffs = []
    if content is not None:
        diffs.append(
            {
                "before_header": config,
                "after_header": config,
                "before": before or "",
                "after": content,
            }
        )
    diffs.append({"prepared": _plan_steps(plan)})
    return diffs


def _install(module, candidate, config):
    """Move the planned file into place (backed up if asked); a new file gets mode 0644."""
    result = {}
    existed = os.path.exists(config)
    if existed and module.params["backup"]:
        result["backup_file"] = module.backup_local(config)
    directory = os.path.dirname(config)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    module.atomic_move(candidate, config)
    if not existed:
        os.chmod(config, 0o644)
    return result


def applied(module, cli):
    """Plan the layout, install it, apply it if the GPUs differ, then verify."""
    config, content = module.params["config"], module.params["content"]
    before = _read(config)
    planned = cli.run(cli.candidate, "plan")
    if planned.code != OK or planned.document is None:
        note = "; nothing was installed or changed"
        cli.fail("plan", planned, note, changed=False, config=config)
    plan = planned.document
    layout_changed = content is not None and content != before
    work = not plan["in_sync"]
    result = {
        "changed": layout_changed or work,
        "config": config,
        "layout_changed": layout_changed,
        "plan": plan,
        "reboot_required": bool(plan.get("reset_pending")),
    }
    if module._diff:
        result["diff"] = _diff(config, before, content, plan)
    if module.check_mode:
        module.exit_json(**result)
    if layout_changed:
        result.update(_install(module, cli.candidate, config))
    pending = False
    if work:
        applying = cli.run(config, "apply", "--lock-wait", str(module.params["lock_wait"]))
        result["apply"] = applying.document
        if applying.code not in (OK, PENDING):
            # A document means apply got past its checks and the lock: GPUs may have changed.
            result["changed"] = layout_changed or applying.document is not None
            cli.fail("apply", applying, **result)
        pending = applying.code == PENDING
    verifying = cli.run(config, "verify")
    result["verify"] = verifying.document
    if verifying.code not in (OK, PENDING):
        cli.fail("verify", verifying, **result)
    result["reboot_required"] = pending or verifying.code == PENDING
    module.exit_json(**result)


def verified(module, cli):
    """Verify the host against the given or the installed layout; drift fails."""
    config = module.params["config"]
    verifying = cli.run(cli.candidate, "verify")
    if verifying.code not in (OK, PENDING):
        cli.fail("verify", verifying, changed=False, config=config, verify=verifying.document)
    module.exit_json(
        changed=False,
        config=config,
        verify=verifying.document,
        reboot_required=verifying.code == PENDING,
    )


def main():
    """The module's entry point."""
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path"},
            "content": {"type": "str"},
            "config": {
                "type": "path",
                "default": "/etc/migrestore/migrestore.toml",
                "fallback": (env_fallback, ["MIGRESTORE_CONFIG"]),
            },
            "state": {"type": "str", "choices": ["applied", "verified"], "default": "applied"},
            "lock_wait": {"type": "float", "default": 30},
            "backup": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("src", "content")],
        supports_check_mode=True,
    )
    if module.params["src"] is not None:
        module.fail_json(
            msg="src names a file on the controller, read by the migrestore.mig.layout action "
            "plugin; this run bypassed it: pass the file's text as content"
        )
    try:
        cli = Migrestore(module, _candidate(module))
        if module.params["state"] == "verified":
            verified(module, cli)
        else:
            applied(module, cli)
    except OSError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
