"""Actions on one asset (convert, prune, hash, inspect, tests, reveal, copy, delete), shared by the
library screen and the details screen. Each ends in a library call made in a worker thread."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

from textual.screen import Screen

from sdhub.catalog.records import AssetDetails
from sdhub.errors import Interrupted, NotFoundError
from sdhub.progress import Progress
from sdhub.tui.backend import error_message, feature
from sdhub.tui.screens.dialogs import ConfirmDialog, ReferenceResultScreen, ReportScreen
from sdhub.tui.screens.prune import ConvertDialog, PruneDialog
from sdhub.tui.widgets.activity import ActivityBar

Work = Callable[[AssetDetails, Progress], Any]


def asset_file(details: AssetDetails) -> Path:
    """The first copy of the asset that is on disk."""
    present = details.asset.present_files
    if not present:
        raise NotFoundError(f"no copy of {details.asset.name} is on disk any more; rescan or get it again")
    return Path(present[0].path)


class AssetActions:
    """Mixed into a Screen that can say which asset is highlighted (``selected_asset_key``)."""

    def selected_asset_key(self) -> str | None:
        raise NotImplementedError

    # -- plumbing --------------------------------------------------------------------------------

    def _with_asset(self: Any, feature_name: str | None, title: str, work: Work,
                    done: Callable[[AssetDetails, Any], None], key: str | None = None) -> None:
        """Load the asset (``key``, else the highlighted one) and run ``work`` on it in a thread;
        ``done`` gets the result on the app's thread."""
        if feature_name and self.app.notify_unavailable(feature_name):
            return
        key = key or self.selected_asset_key()
        if key is None:
            self.notify("No asset is highlighted.", severity="warning")
            return
        activity = self.query_one(ActivityBar)
        progress = activity.progress_for(title)
        self.run_worker(partial(self._asset_work, key, title, work, done, progress, activity),
                        thread=True, group="asset-actions", exit_on_error=False, name=title)

    def _asset_work(self: Any, key: str, title: str, work: Work, done: Callable[[AssetDetails, Any], None],
                    progress: Progress, activity: ActivityBar) -> None:
        app = self.app
        try:
            with app.open_catalog() as catalog:
                details = catalog.show(key)
            result = work(details, progress)
        except Interrupted as stopped:  # cancelled (the app is quitting): say what was left
            app.notify(str(stopped), title=f"{title} cancelled", severity="warning", timeout=10)
        except Exception as error:  # SdhubError, or a library bug: a notification, never a crash
            app.notify(error_message(error), title=f"{title} failed", severity="error", timeout=10)
        else:
            if app.stopping:  # it ended before its next report; its outcome goes to the terminal
                app.exit_notes.append(f"{title}: finished before sdhub quit")
            app.call_from_thread(done, details, result)
        finally:
            app.call_from_thread(activity.done, title)

    def _ask_then(self: Any, feature_name: str | None, dialog_factory: Callable[[AssetDetails], Screen],
                  on_answer: Callable[[AssetDetails, Any], None]) -> None:
        """Load the asset (and the library module the action needs, off the UI thread), show a
        dialog about it, and call ``on_answer`` with a non-None answer."""
        def load(details: AssetDetails, progress: Progress) -> None:
            if feature_name:
                feature(feature_name)

        def ask(details: AssetDetails, _: Any) -> None:
            def answered(answer: Any) -> None:
                if answer is not None:
                    on_answer(details, answer)
            self.app.push_screen(dialog_factory(details), answered)

        self._with_asset(None, "Loading", load, ask)

    # -- the actions -----------------------------------------------------------------------------

    def action_prune(self: Any) -> None:
        if self.app.notify_unavailable("prune"):
            return
        self._ask_then("prune", PruneDialog, self._run_prune)

    def _run_prune(self: Any, details: AssetDetails, answer: Any) -> None:
        options, output = answer

        def work(details: AssetDetails, progress: Progress) -> Any:
            report = feature("prune")(asset_file(details), output, options, progress,
                                      source_sha256=details.asset.sha256)
            with self.app.open_catalog() as catalog:
                catalog.add_file(Path(output))
            return report

        self._started(f"Pruning {details.asset.name}", output)
        self._with_asset("prune", f"Pruning {details.asset.name}", work,
                         lambda details, report: self._made_file(output, "Prune finished"), details.asset.sha256)

    def action_convert(self: Any) -> None:
        if self.app.notify_unavailable("convert"):
            return
        self._ask_then("convert", ConvertDialog, self._run_convert)

    def _run_convert(self: Any, details: AssetDetails, answer: Any) -> None:
        options, output = answer

        def work(details: AssetDetails, progress: Progress) -> Any:
            report = feature("convert")(asset_file(details), output, progress=progress, **options)
            with self.app.open_catalog() as catalog:
                catalog.add_file(Path(output))
            return report

        self._started(f"Converting {details.asset.name}", output)
        self._with_asset("convert", f"Converting {details.asset.name}", work,
                         lambda details, report: self._made_file(output, "Convert finished"), details.asset.sha256)

    def _started(self: Any, title: str, output: Path) -> None:
        self.notify(f"writing {output}; the bar at the bottom shows its progress", title=title)

    def _made_file(self: Any, output: Path, title: str) -> None:
        self.notify(f"{Path(output).name} is in the library", title=title)
        self.app.catalog_changed()

    def action_hash(self: Any) -> None:
        def work(details: AssetDetails, progress: Progress) -> Any:
            return feature("hash")(asset_file(details), progress=progress)

        def done(details: AssetDetails, hashes: Any) -> None:
            values = hashes.to_dict()
            matches = values.get("sha256") == details.asset.sha256
            verdict = ("matches the catalog" if matches
                       else "DIFFERS from the catalog: the file changed since it was scanned; rescan")
            self.app.push_screen(ReportScreen(f"Hashes of {details.asset.name}", values,
                                              note=f"SHA-256 {verdict}", error=not matches))

        self._with_asset("hash", "Hashing", work, done)

    def action_inspect(self: Any) -> None:
        def work(details: AssetDetails, progress: Progress) -> Any:
            return feature("inspect")(asset_file(details))

        def done(details: AssetDetails, report: Any) -> None:
            self.app.push_screen(ReportScreen(f"Inspect {details.asset.name}", report.to_dict()))

        self._with_asset("inspect", "Inspecting", work, done)

    def action_smoke_test(self: Any) -> None:
        def work(details: AssetDetails, progress: Progress) -> Any:
            return feature("smoke_test")(self.app.home, [str(asset_file(details))], progress=progress)[0]

        self._with_asset("smoke_test", "Smoke test", work, self._show_test)

    def action_asuka_test(self: Any) -> None:
        self._asuka_test(None, force=False)

    def _asuka_test(self: Any, key: str | None, *, force: bool) -> None:
        """Run the Asuka test; a model that is not the test's is asked about before anything is drawn."""
        def work(details: AssetDetails, progress: Progress) -> Any:
            run = feature("asuka_test")
            from sdhub.generate.reference_tests import WrongModelError  # loaded with the feature

            try:
                return run(self.app.home, str(asset_file(details)), progress=progress, force=force)
            except WrongModelError as wrong:
                return wrong

        def done(details: AssetDetails, result: Any) -> None:
            if not isinstance(result, Exception):
                self._show_test(details, result)
                return
            from sdhub.generate.reference_tests import ASUKA_MODEL_HASH, ASUKA_MODEL_NAME

            body = (f"{details.asset.name} has model hash {result.actual_hash}; the Asuka test is for "
                    f"{ASUKA_MODEL_NAME} ({ASUKA_MODEL_HASH}). Any other model draws another picture, and the "
                    "verdict will be 'wrong-model'. Draw it anyway?")
            dialog = ConfirmDialog("Not the Asuka test's model", body, confirm="Draw anyway", cancel="Cancel")
            self.app.push_screen(dialog, lambda yes: self._asuka_test(details.asset.sha256, force=True) if yes
                                 else None)

        self._with_asset("asuka_test", "Asuka test", work, done, key=key)

    def _show_test(self: Any, details: AssetDetails, result: Any) -> None:
        title = "Asuka test" if result.kind == "asuka" else "Smoke test"
        self.app.push_screen(ReferenceResultScreen(f"{title}: {details.asset.name}", result))
        self.app.catalog_changed()

    def action_reveal(self: Any) -> None:
        def done(details: AssetDetails, path: Path) -> None:
            self.app.copy_to_clipboard(str(path))
            self.notify(str(path), title="Path (copied)", timeout=8)

        self._with_asset(None, "Locating", lambda details, progress: asset_file(details), done)

    def action_copy_hash(self: Any) -> None:
        def done(details: AssetDetails, _: Any) -> None:
            self.app.copy_to_clipboard(details.asset.sha256)
            self.notify(details.asset.sha256, title="SHA-256 copied")

        self._with_asset(None, "Loading", lambda details, progress: None, done)

    def action_copy_triggers(self: Any) -> None:
        def done(details: AssetDetails, _: Any) -> None:
            words = ", ".join(details.asset.trigger_words)
            if not words:
                self.notify(f"{details.asset.name} has no trigger words.", severity="warning")
                return
            self.app.copy_to_clipboard(words)
            self.notify(words, title="Trigger words copied")

        self._with_asset(None, "Loading", lambda details, progress: None, done)

    def action_delete(self: Any) -> None:
        if self.app.notify_unavailable("catalog"):
            return

        def dialog(details: AssetDetails) -> Screen:
            paths = "\n".join(f.path for f in details.asset.present_files) or "(no file on disk)"
            return ConfirmDialog(f"Delete {details.asset.name}?",
                                 f"These files will be deleted:\n{paths}", confirm="Delete")

        self._ask_then(None, dialog, self._run_delete)

    def _run_delete(self: Any, details: AssetDetails, answer: Any) -> None:
        if not answer:
            return

        def work(details: AssetDetails, progress: Progress) -> Any:
            with self.app.open_catalog() as catalog:
                return catalog.remove(details.asset.sha256, files=True)

        def done(details: AssetDetails, report: Any) -> None:
            self.notify(f"deleted {details.asset.name}", title="Deleted")
            self.app.catalog_changed()
            self.after_delete()

        self._with_asset("catalog", "Deleting", work, done, details.asset.sha256)

    def after_delete(self) -> None:
        """Hook: the details screen closes itself once its asset is gone."""
