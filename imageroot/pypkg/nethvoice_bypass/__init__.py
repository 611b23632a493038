# SPDX-License-Identifier: GPL-3.0-or-later
"""nethvoice-bypass: bypass the NethVoice SIP proxy for trunks that cannot use it.

All logic lives in this package; the action steps in imageroot/actions only call it.
"""
