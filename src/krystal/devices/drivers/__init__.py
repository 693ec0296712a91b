"""Built-in device drivers (registered in krystal.devices.driver.BUILTIN)."""
