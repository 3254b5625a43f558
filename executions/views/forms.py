"""The pages' forms. A form reads what was typed into values of the right kind (text, a whole
number, JSON); the rules a job must keep are admission's (services.execute_request_parse), whose
refusals land beside the field they name, so the page and the API refuse alike and in the same words."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from executions import services
from executions.errors import InvalidRequest

FIELD_OF = {"files": "input_files"}  # admission's field names that differ from the form's


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class InputFilesField(forms.Field):
    """The files picked or dropped for /input, as uploaded (a FileField would refuse empty ones:
    an empty input file is a fine input). Their rules are admission's, checked in clean()."""

    widget = MultipleFileInput

    def clean(self, value: Any) -> list[UploadedFile]:
        return [upload for upload in value or [] if isinstance(upload, UploadedFile)]


class ExecutionForm(forms.Form):
    """The New and Fork pages: code, the environment (job type), a timeout, JSON input, input
    files, per-run packages and a startup timeout."""

    code = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    job_type = forms.CharField(required=False)
    timeout = forms.IntegerField(
        required=False, error_messages={"invalid": "Timeout must be a whole number of seconds"}
    )
    input_data = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    # (Not "files": a form's `files` is the request's uploads.) Admission's "files" errors land here.
    input_files = InputFilesField(required=False)
    # One pip requirement a line (a specifier may hold commas: numpy>=1.26,<2).
    requirements = forms.CharField(required=False, widget=forms.Textarea)
    startup_timeout = forms.IntegerField(
        required=False, error_messages={"invalid": "Startup timeout must be a whole number of seconds"}
    )
    # Sent again by a second click on Run: the same job, never a second run (an idempotency key).
    submit_token = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def clean_input_data(self) -> Any:
        text = self.cleaned_data["input_data"]
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Input is not valid JSON: {exc}") from None

    def clean_requirements(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["requirements"].splitlines() if line.strip()]

    def clean(self) -> dict[str, Any]:
        """Validate the job as admission will; its refusals are shown beside their fields."""
        cleaned = super().clean() or {}
        body: dict[str, Any] = {"code": cleaned.get("code", ""), "job_type": cleaned.get("job_type") or None}
        for name in ("timeout", "input_data", "requirements", "startup_timeout"):
            if cleaned.get(name) is not None:
                body[name] = cleaned[name]
        files = self._files_by_name(cleaned.get("input_files") or [])
        if files:
            body["files"] = files
        try:
            cleaned["request"] = services.execute_request_parse(body)
        except InvalidRequest as exc:
            for name, messages in exc.errors.items():
                name = FIELD_OF.get(name, name)
                if name not in self.errors:  # a field's own error (bad JSON) says it first
                    self.add_error(name if name in self.fields else None, messages)
        return cleaned

    def _files_by_name(self, uploads: list[UploadedFile]) -> dict[str, bytes]:
        """{name: content}: a file's name is its path under /input. Admission checks the count
        and sizes; the request's own size is bounded (TAKO_MAX_REQUEST_BYTES) before this reads it."""
        files: dict[str, bytes] = {}
        for upload in uploads:
            name = upload.name or ""
            if name in files:
                self.add_error("input_files", f"File {name!r}: chosen twice; rename one of them")
            files[name] = upload.read()
        return files

    @staticmethod
    def initial_for(execution: Any) -> dict[str, Any]:
        """What an earlier job ran, to start the Fork page's form with."""
        return {
            "code": execution.code,
            "job_type": execution.job_type,
            "timeout": execution.timeout,
            "input_data": json.dumps(execution.input_data, indent=2),
            "requirements": "\n".join(execution.requirements or []),
            "startup_timeout": execution.startup_timeout,
        }


class ExecutionFilterForm(forms.Form):
    """The executions list's filters; a value that does not parse is shown beside its field and
    left out of the filter (the list still shows)."""

    status = forms.CharField(required=False)
    job_type = forms.CharField(required=False, max_length=64)
    user = forms.CharField(required=False, max_length=150)
    q = forms.CharField(required=False, max_length=200, strip=True)  # text in the code
    since = forms.DateField(required=False, error_messages={"invalid": "A date such as 2026-11-29"})
    until = forms.DateField(required=False, error_messages={"invalid": "A date such as 2026-11-29"})

    def applied(self) -> dict[str, Any]:
        """The filters that parsed, by name (the empty ones left out)."""
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {name: value for name, value in cleaned.items() if value not in (None, "") and name not in self.errors}
