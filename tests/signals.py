"""Signal set-up for the subprocesses tests interrupt."""
import signal


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test stops with SIGINT (Ctrl-C): a shell's background job (CI run
    with ``&``, ``nohup``) ignores SIGINT, and an ignored signal stays ignored through ``exec``, so the
    child would never see it; with the default disposition Python installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
