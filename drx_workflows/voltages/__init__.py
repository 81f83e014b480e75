"""Science of the voltages: the LiTMO2/TMO2 composition key, the voltage from energies, relaxing with a potential."""
