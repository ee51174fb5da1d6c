"""The environment a model-run command gets: an allow-list, never the gateway's secrets.

Only named variables from the gateway's environment pass (``PATH``, ``HOME``,
locale, ``LC_*``); secret-looking names are dropped even if allow-listed, and so
is any variable whose *value* is or contains one of the configured secrets
(gateway token or password, provider API keys), whatever its name.

The model's ``env`` overrides follow OpenClaw's host environment policy: a
variable that makes a program run other code or read other configuration
(``PATH``, loader and interpreter hooks such as ``LD_*`` or ``NODE_OPTIONS``,
``GIT_EXTERNAL_DIFF``, ``GIT_CONFIG_*``, ``HOME``, pagers and editors, ...) is
refused, as is a secret-looking name: otherwise ``env`` would get round the
exec allowlist (``git diff`` with ``GIT_EXTERNAL_DIFF`` runs any program). A
``PAGER`` or ``GIT_PAGER`` of ``cat`` or nothing is allowed, as an empty value.
Refused too are the variables that change how a program parses its arguments
(``POSIXLY_CORRECT``: :data:`BLOCKED_ARGUMENT_PARSING`), which the allowlist's
safe-bin profiles depend on, and those that make ``bash -c`` read the
operator's startup files (``SSH_CLIENT``: :data:`BLOCKED_SHELL_STARTUP`),
and those that make glibc read locale data or message catalogs from another
directory (``LOCPATH``, ``NLSPATH``, ``TZDIR``, ``TEXTDOMAINDIR``, and a
``LANGUAGE``, ``LANG``, ``LC_*`` or ``TZ`` value that is a path:
:func:`path_like_locale`), ``TMPDIR``, and a ``LC_ALL``, ``LC_CTYPE`` or
``LANG`` whose character set is not UTF-8 (:func:`unsafe_charset`; such a
value in the gateway's own environment is not passed on either).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from openclaw.agents.tools._common import check_text
from openclaw.agents.tools.base import ToolArgumentError

#: Variables copied from the gateway's environment when present.
DEFAULT_PASSTHROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "TMPDIR",
)

_SECRET_NAME = re.compile(
    r"(^OPENCLAW_GATEWAY_(TOKEN|PASSWORD)$)|(_API_KEY$)|(^API_KEY$)|(TOKEN$)|(SECRET)|(PASSWORD)"
    r"|(^AWS_SESSION)|(_CREDENTIALS?$)|(^OPENCLAW_.*KEY$)",
    re.IGNORECASE,
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: OpenClaw's host env policy (``host-env-security-policy.json``): names the
#: model may never set, because they change what a program runs or loads.
BLOCKED_EVERYWHERE = _names(
    """
    ANT_OPTS BASHOPTS BASH_ENV BROWSER BZR_EDITOR BZR_PLUGIN_PATH BZR_SSH CARGO_BUILD_RUSTC
    CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC_WRAPPER CARGO_BUILD_RUSTDOC
    CATALINA_OPTS CC CMAKE_CXX_COMPILER CMAKE_C_COMPILER CMAKE_TOOLCHAIN_FILE CONFIG_SHELL
    CONFIG_SITE CORECLR_PROFILER CPP CXX CXXCPP DOTNET_ADDITIONAL_DEPS DOTNET_STARTUP_HOOKS
    ELIXIR_ERL_OPTIONS EMACSLOADPATH ENV ERL_AFLAGS ERL_FLAGS ERL_ZFLAGS EXINIT FPATH
    GCONV_PATH GIT_ALLOW_PROTOCOL GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_COMMON_DIR GIT_DIR
    GIT_EDITOR GIT_EXEC_PATH GIT_EXTERNAL_DIFF GIT_HOOK_PATH GIT_INDEX_FILE GIT_NAMESPACE
    GIT_OBJECT_DIRECTORY GIT_PROTOCOL_FROM_USER GIT_SEQUENCE_EDITOR GIT_SSL_CAINFO
    GIT_SSL_CAPATH GIT_SSL_NO_VERIFY GIT_TEMPLATE_DIR GIT_WORK_TREE GLIBC_TUNABLES
    GRADLE_OPTS GVIMINIT HELM_PLUGINS HGEDITOR HGMERGE HGRCPATH HOSTALIASES IFS JAVA_OPTS
    JAVA_TOOL_OPTIONS JDK_JAVA_OPTIONS JULIA_EDITOR KSH_ENV LUA_INIT LUA_INIT_5_1
    LUA_INIT_5_2 LUA_INIT_5_3 LUA_INIT_5_4 MAKE MAKEFLAGS MAVEN_OPTS MFLAGS MYVIMRC
    NODE_OPTIONS NODE_PATH NODE_REDIRECT_WARNINGS NODE_REPL_EXTERNAL_MODULE
    NODE_REPL_HISTORY NODE_V8_COVERAGE PACKER_PLUGIN_PATH PERL5LIB PERL5OPT PS4
    PYTHONBREAKPOINT PYTHONHOME PYTHONPATH RUBYLIB RUBYOPT RUBYSHELL RUSTC
    RUSTC_WORKSPACE_WRAPPER RUSTC_WRAPPER RUSTDOC R_ENVIRON R_ENVIRON_USER R_PROFILE
    R_PROFILE_USER SBT_OPTS SHELL SHELLOPTS SSLKEYLOGFILE SUDO_ASKPASS SVN_EDITOR SVN_SSH
    TCLLIBPATH VAGRANT_VAGRANTFILE VIMINIT _JAVA_OPTIONS
    """
)
#: Names the model may not set though a command may inherit them (where a
#: program finds its configuration, credentials, proxies, pager, editor).
BLOCKED_OVERRIDE_ONLY = _names(
    """
    ALL_PROXY AMQP_URL ANSIBLE_CALLBACK_PLUGINS ANSIBLE_COLLECTIONS_PATH ANSIBLE_CONFIG
    ANSIBLE_CONNECTION_PLUGINS ANSIBLE_FILTER_PLUGINS ANSIBLE_INVENTORY_PLUGINS
    ANSIBLE_LIBRARY ANSIBLE_LOOKUP_PLUGINS ANSIBLE_MODULE_UTILS ANSIBLE_REMOTE_TEMP
    ANSIBLE_ROLES_PATH ANSIBLE_STRATEGY_PLUGINS AWS_ACCESS_KEY_ID AWS_CONFIG_FILE
    AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
    AWS_SECRET_ACCESS_KEY AWS_SECURITY_TOKEN AWS_SESSION_TOKEN AWS_SHARED_CREDENTIALS_FILE
    AWS_WEB_IDENTITY_TOKEN_FILE AZURE_AUTH_LOCATION AZURE_CLIENT_ID AZURE_CLIENT_SECRET
    BUNDLE_GEMFILE BUN_CONFIG_REGISTRY CARGO_BUILD_RUSTC_WRAPPER CARGO_HOME CFLAGS
    CGO_CFLAGS CGO_LDFLAGS CLASSPATH COMPOSER_HOME CONDA_DEFAULT_ENV CONDA_PREFIX
    CORECLR_PROFILER_PATH CPATH CPLUS_INCLUDE_PATH CURL_CA_BUNDLE CURL_HOME C_INCLUDE_PATH
    DATABASE_URL DENO_DIR DOCKER_CERT_PATH DOCKER_CONTEXT DOCKER_HOST DOCKER_TLS_VERIFY
    EDITOR FCEDIT GEM_HOME GEM_PATH GH_TOKEN GITHUB_TOKEN GITLAB_TOKEN
    GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_ASKPASS GIT_COMMON_DIR GIT_DIR GIT_INDEX_FILE
    GIT_NAMESPACE GIT_OBJECT_DIRECTORY GIT_PAGER GIT_PROXY_COMMAND GIT_SSH GIT_SSH_COMMAND
    GIT_SSL_CAINFO GIT_SSL_CAPATH GIT_SSL_NO_VERIFY GIT_WORK_TREE GOENV GOFLAGS GONOPROXY
    GONOSUMCHECK GONOSUMDB GOOGLE_APPLICATION_CREDENTIALS GOPATH GOPRIVATE GOPROXY
    GRADLE_USER_HOME HELM_HOME HGRCPATH HISTFILE HOME HTTPS_PROXY HTTP_PROXY KUBECONFIG
    LDFLAGS LESSCLOSE LESSOPEN LIBRARY_PATH LUA_CPATH LUA_PATH MAKEFLAGS MANPAGER MFLAGS
    MONGODB_URI NODE_AUTH_TOKEN NODE_EXTRA_CA_CERTS NODE_TLS_REJECT_UNAUTHORIZED NO_PROXY
    NPM_TOKEN OBJC_INCLUDE_PATH OPENSSL_CONF OPENSSL_ENGINES PAGER PERL5DB PERL5DBCMD PHPRC
    PHP_INI_SCAN_DIR PIP_CONFIG_FILE PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_INDEX_URL
    PIP_PYPI_URL PIP_TRUSTED_HOST PROMPT_COMMAND PYTHONSTARTUP PYTHONUSERBASE REDIS_URL
    REQUESTS_CA_BUNDLE RUSTC_WRAPPER RUSTFLAGS RUSTUP_DIST_ROOT RUSTUP_DIST_SERVER
    RUSTUP_HOME RUSTUP_TOOLCHAIN RUSTUP_UPDATE_ROOT R_LIBS_USER SSH_ASKPASS SSH_AUTH_SOCK
    SSL_CERT_DIR SSL_CERT_FILE SUDO_EDITOR SYSTEMROOT TF_CLI_CONFIG_FILE TF_PLUGIN_CACHE_DIR
    UV_DEFAULT_INDEX UV_EXTRA_INDEX_URL UV_INDEX UV_INDEX_URL UV_PYTHON VIRTUAL_ENV VISUAL
    WGETRC WINDIR XDG_CACHE_HOME XDG_CONFIG_DIRS XDG_CONFIG_HOME XDG_DATA_DIRS XDG_DATA_HOME
    XDG_RUNTIME_DIR XDG_STATE_HOME YARN_RC_FILENAME ZDOTDIR
    """
)
#: Names that change how programs parse their arguments or which program a
#: shell runs, so that the exec allowlist judges another command than runs:
#: under ``POSIXLY_CORRECT`` GNU ``getopt`` stops at the first operand
#: (``head - -n secret`` reads ``secret``), ``_POSIX2_VERSION`` switches
#: coreutils' obsolete syntax (``tail +5``), ``GREP_OPTIONS`` adds options to
#: grep, ``EXECIGNORE`` makes bash skip programs on ``PATH``. Stricter than
#: OpenClaw.
BLOCKED_ARGUMENT_PARSING = _names(
    "POSIXLY_CORRECT POSIX_ME_HARDER _POSIX2_VERSION GREP_OPTIONS EXECIGNORE"
)
#: Names that make a shell read startup files: Debian's bash (built with
#: ``SSH_SOURCE_BASHRC``) sources ``/etc/bash.bashrc`` and ``~/.bashrc`` even
#: for ``bash -c`` when ``SSH_CLIENT`` or ``SSH2_CLIENT`` is set and ``SHLVL``
#: is below 2, so ``bash -c true`` would run whatever the operator's rc runs
#: before its interactivity guard, and the script would get its ``PATH``,
#: functions and aliases. ``SSH_CONNECTION`` and ``SSH_TTY`` do not trigger
#: it (bash 5.2) but say the same thing to other programs. Stricter than
#: OpenClaw.
BLOCKED_SHELL_STARTUP = _names("SSH_CLIENT SSH2_CLIENT SSH_CONNECTION SSH_TTY SHLVL")
#: Names that make glibc or gettext read locale data, message catalogs or
#: time zones from a directory of the caller's choosing: a message catalog
#: holds the ``printf`` formats a program prints with (``%n`` writes memory),
#: so one in the workspace is code for every localized program (the safe
#: bins, ``ls``, ``git``). Stricter than OpenClaw; ``GCONV_PATH`` is in
#: :data:`BLOCKED_EVERYWHERE`.
BLOCKED_LOCALE_PATHS = _names("LOCPATH NLSPATH TZDIR TEXTDOMAIN TEXTDOMAINDIR")
#: Where programs put temporary files: ``TMPDIR`` is ``sort -T`` (denied as a
#: flag), so with ``sort`` a safe bin the model could leave files of its
#: choosing (``sort -S 1b`` spills every line) in any directory the gateway
#: can write. Stricter than OpenClaw.
BLOCKED_TEMP_DIRS = _names("TMPDIR")
#: The variables that choose the character set a shell reads its script in.
_CTYPE_NAMES = frozenset({"LC_ALL", "LC_CTYPE", "LANG"})
#: A locale's codeset part (``ll_CC.<codeset>@modifier``).
_CODESET = re.compile(r"\.([^@]*)")
#: Locale names gettext builds a path from
#: (``/usr/share/locale/<LANGUAGE>/LC_MESSAGES/<domain>.mo``): glibc refuses
#: a ``/`` in them only for setuid programs, so their values may name no path.
_LOCALE_NAMES = frozenset({"LANG", "LANGUAGE"})


def path_like_locale(name: str, value: str) -> bool:
    """Whether ``value`` of locale variable ``name`` (``LANG``, ``LANGUAGE``,
    ``LC_*``, ``TZ``) names a file rather than a locale or a zone: a ``/`` or
    ``..`` in a locale name (``LANGUAGE=../../../<workspace>/xx`` loaded the
    workspace's ``xx/LC_MESSAGES/coreutils.mo``), a ``TZ`` that is a path
    (``/x``, ``:/x``) or climbs out of the zone directory (``..``)."""
    upper = name.upper()
    if upper in _LOCALE_NAMES or upper.startswith("LC_"):
        return "/" in value or ".." in value
    if upper == "TZ":
        return value.removeprefix(":").startswith("/") or ".." in value
    return False


def unsafe_charset(name: str, value: str) -> bool:
    """Whether locale variable ``name`` set to ``value`` may select a character
    set other than UTF-8 or ASCII. bash reads its ``-c`` script in the
    locale's encoding: in Big5, GBK or GB18030 a byte ``\\`` can end a
    two-byte character, so ``true 䡡\\;touch x`` (one safe word to the
    policy, which reads UTF-8) runs ``touch x``. ``C``, ``POSIX`` and names
    whose codeset is UTF-8 are safe; a name without one (``zh_TW``) takes the
    language's default, which may be Big5."""
    if name.upper() not in _CTYPE_NAMES or value in ("", "C", "POSIX"):
        return False
    match = _CODESET.search(value)
    codeset = match.group(1).lower().replace("-", "") if match else ""
    return codeset != "utf8"


#: glibc's per-process ``getopt`` hint (``_<pid>_GNU_nonoption_argv_flags_``).
_GETOPT_HINT = re.compile(r"^_[0-9]+_GNU_NONOPTION_ARGV_FLAGS_$")
#: Prefixes blocked everywhere (loader, exported bash functions) and for overrides.
BLOCKED_PREFIXES = ("DYLD_", "LD_", "BASH_FUNC_")
BLOCKED_OVERRIDE_PREFIXES = ("GIT_CONFIG_", "NPM_CONFIG_", "CARGO_REGISTRIES_", "TF_VAR_")
_CARGO_TARGET_RUNNER = re.compile(r"^CARGO_TARGET_[A-Z0-9_]+_(?:LINKER|RUNNER)$")
#: Pager variables whose "no pager" values (``cat``, empty) pass as empty.
_PAGERS = frozenset({"PAGER", "GIT_PAGER"})
_NO_PAGER = frozenset({"", "cat"})

MAX_ENV_OVERRIDES = 64
MAX_ENV_VALUE = 32_768


def is_secret_name(name: str) -> bool:
    """True for names that conventionally hold credentials."""
    return bool(_SECRET_NAME.search(name))


def is_blocked_override(name: str, value: str | None = None) -> bool:
    """True when the model may not set ``name`` (to ``value``, when given) under
    OpenClaw's host env policy; names compare case-insensitively, as there."""
    upper = name.upper()
    if upper in _PAGERS and value in _NO_PAGER:
        return False
    return (
        upper == "PATH"
        or upper in BLOCKED_EVERYWHERE
        or upper in BLOCKED_OVERRIDE_ONLY
        or upper in BLOCKED_ARGUMENT_PARSING
        or upper in BLOCKED_SHELL_STARTUP
        or upper in BLOCKED_LOCALE_PATHS
        or upper in BLOCKED_TEMP_DIRS
        or (value is not None and path_like_locale(upper, value))
        or (value is not None and unsafe_charset(upper, value))
        or bool(_GETOPT_HINT.match(upper))
        or upper.startswith(BLOCKED_PREFIXES)
        or upper.startswith(BLOCKED_OVERRIDE_PREFIXES)
        or bool(_CARGO_TARGET_RUNNER.match(upper))
    )


def _override_value(name: str, value: str) -> str:
    """``cat`` as a pager means no pager: passed as empty, as OpenClaw does."""
    return "" if name.upper() in _PAGERS and value in _NO_PAGER else value


#: Secrets at least this long are also looked for inside values.
_MIN_CONTAINED_SECRET = 8


def build_env(
    source: Mapping[str, str],
    *,
    secrets: Iterable[str] = (),
    passthrough: Iterable[str] = DEFAULT_PASSTHROUGH,
    overrides: Mapping[str, str] | None = None,
    path_prepend: Iterable[str] = (),
) -> dict[str, str]:
    """The command's environment (see the module docstring)."""
    secret_values = {s for s in secrets if s}

    def leaks(value: str) -> bool:
        # A secret inside a longer value ("Bearer <token>") leaks as much as
        # the value alone; short secrets are matched whole (they would match
        # inside ordinary values such as PATH).
        return value in secret_values or any(
            len(secret) >= _MIN_CONTAINED_SECRET and secret in value for secret in secret_values
        )

    env: dict[str, str] = {}
    for name in passthrough:
        value = source.get(name)
        if value is None or leaks(value) or is_secret_name(name) or unsafe_charset(name, value):
            continue
        env[name] = value
    for name, value in source.items():
        if not name.startswith("LC_") or is_secret_name(name) or leaks(value):
            continue
        if not unsafe_charset(name, value):
            env[name] = value
    prepend = [p for p in path_prepend if p]
    if prepend:
        env["PATH"] = ":".join([*prepend, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    for name, value in (overrides or {}).items():
        # parse_overrides refuses these up front; dropped here too so that no
        # caller can pass them.
        if leaks(value) or is_secret_name(name) or is_blocked_override(name, value):
            continue
        env[name] = _override_value(name, value)
    env["OPENCLAW_SHELL"] = "exec"
    return env


def parse_overrides(value: Any) -> dict[str, str]:
    """Validate the model's ``env`` argument: a blocked or secret-looking name
    refuses the call with the names (OpenClaw refuses it too, rather than run
    the command with a different environment than asked)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ToolArgumentError("env must be an object of string values")
    if len(value) > MAX_ENV_OVERRIDES:
        raise ToolArgumentError(f"env has too many entries (limit {MAX_ENV_OVERRIDES})")
    out: dict[str, str] = {}
    blocked: list[str] = []
    pathlike: list[str] = []
    charset: list[str] = []
    secret: list[str] = []
    for name, item in value.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ToolArgumentError(f"env: invalid variable name {str(name)[:64]!r}")
        if not isinstance(item, str):
            raise ToolArgumentError(f"env.{name} must be a string")
        text = check_text(f"env.{name}", item, MAX_ENV_VALUE)
        if path_like_locale(name, text):
            pathlike.append(name)
        elif unsafe_charset(name, text):
            charset.append(name)
        elif is_blocked_override(name, text):
            blocked.append(name)
        elif is_secret_name(name):
            secret.append(name)
        else:
            out[name] = _override_value(name, text)
    problems = []
    if blocked:
        problems.append(
            f"{', '.join(sorted(blocked))}: cannot be overridden for host execution "
            "(the host environment policy blocks variables that make programs run "
            "other code or read other configuration)"
        )
    if pathlike:
        problems.append(
            f"{', '.join(sorted(pathlike))}: a locale or time zone value may not be a path "
            "(no '/' or '..'): programs would load their messages from it"
        )
    if charset:
        problems.append(
            f"{', '.join(sorted(charset))}: only a UTF-8 locale (or C/POSIX) may be set: "
            "the shell would read the command in another character set than it was checked in"
        )
    if secret:
        problems.append(
            f"{', '.join(sorted(secret))}: credential-like names are not passed to commands"
        )
    if problems:
        raise ToolArgumentError(f"env: {'; '.join(problems)}. The command did not run.")
    return out
