"""Device-side scripts for the Intel Movidius NCS / NCS2 (MYRIAD plugin:
OpenVINO <= 2022.3, Python 3.7-3.10). Power from a USB meter between the
host port and the stick (serial or a timestamped CSV log)."""
