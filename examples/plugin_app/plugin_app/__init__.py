"""A small application with plugins, installed from wheels at run time."""

from plugin_app.plugins import PluginInstallError, install_plugin, install_target, installed_plugins

__all__ = ["PluginInstallError", "install_plugin", "install_target", "installed_plugins"]
