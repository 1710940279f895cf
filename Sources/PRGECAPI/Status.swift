import PRGE
