"""Drivers turn hardware into the interfaces of `drivers.base`. Nothing above this package imports
pyscard, nfc or cv2."""
