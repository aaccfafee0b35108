# SPDX-License-Identifier: Apache-2.0
# Copyright: migrestore contributors
"""The controller side of migrestore.mig.layout: `src` is read here and sent as `content`."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Read `src` on the controller (found, and decrypted, as `copy` does); run the module."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        """Replace `src` by the file's text, then run the module on the managed node."""
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        src = args.pop("src", None)
        if src is not None:
            if args.get("content") is not None:
                raise AnsibleActionFail("parameters are mutually exclusive: src|content")
            args["content"] = self._read(src)
        result.update(self._execute_module(module_args=args, task_vars=task_vars))
        return result

    def _read(self, src):
        """The text of a file on the controller, searched for in files/ and decrypted if vaulted."""
        try:
            path = self._loader.get_real_file(self._find_needle("files", src), decrypt=True)
        except AnsibleError as exc:
            raise AnsibleActionFail(to_text(exc)) from exc
        try:
            with open(path, "rb") as handle:
                return to_text(handle.read(), errors="surrogate_or_strict")
        except (OSError, UnicodeError) as exc:
            raise AnsibleActionFail(f"could not read {src}: {exc}") from exc
        finally:
            self._loader.cleanup_tmp_file(path)
